"""Contract of every registered search strategy, on its seconds-long ``smoke_config``: the run folder is the one
of every run (manifest, config, a metrics row per epoch, a ``weights_only`` checkpoint tagged with its schema,
its plots: the heatmap unless the strategy names its own ``plots``), and ``result.json`` holds the found
architecture as a named sample that the strategy's space builds back into the same arch spec (and, for a joint
space, into the same recipe fields; its samples too). The negative control shows the check can fail."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from fbnas.runs import RunFolder
from fbnas.search.strategy import Strategy, run_search, strategies


def _same_spec(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "name"} == {k: v for k, v in b.items() if k != "name"}


def result_problems(strategy: Strategy, cfg, result: dict) -> list[str]:
    """Where ``result`` does not describe what the strategy's space builds from its samples."""
    space = strategy.space(cfg)
    problems = []
    for entry in [result, *result.get("samples", [])]:
        sample = json.loads(json.dumps(entry["sample"]))
        built = space.build(sample)
        if built.arch is None or not _same_spec(built.arch.to_dict(), entry["arch"]):
            problems.append(f"sample {sample} does not build its arch spec")
        if built.recipe is not None and any(entry.get("recipe", {}).get(k) != v for k, v in built.recipe.items()):
            problems.append(f"sample {sample} does not build its recipe {entry.get('recipe')}")
        if "choices" in entry and space.indices(sample) != entry["choices"]:
            problems.append(f"sample {sample} is not choices {entry['choices']}")
    return problems


def folder_problems(folder: RunFolder, cfg, strategy: Strategy | None = None) -> list[str]:
    problems = []
    manifest = folder.read_json(folder.MANIFEST)
    if not manifest or manifest["kind"] != "search" or not manifest["ended_at"] or manifest["seed"] != cfg.seed:
        problems.append(f"manifest {manifest}")
    if folder.read_config() != cfg.to_dict():
        problems.append("config.json is not the resolved config")
    rows = folder.read_metrics()
    epochs = strategy.expected_epochs(cfg) if hasattr(strategy, "expected_epochs") else cfg.schedule.epochs
    if [r["epoch"] for r in rows] != list(range(epochs)):
        problems.append(f"metrics.jsonl epochs {[r['epoch'] for r in rows]}")
    state = torch.load(folder.file(folder.CHECKPOINT), weights_only=True)
    if state.get("schema") != "fbnas.search/1":
        problems.append(f"checkpoint schema {state.get('schema')}")
    for plot in getattr(strategy, "plots", ["theta_heatmap.png"]):
        if not folder.plot(plot).exists():
            problems.append(f"no {plot}")
    return problems


@pytest.mark.parametrize("name", sorted(strategies()))
def test_strategy_contract(name, tmp_path):
    strategy = strategies()[name]
    cfg = strategy.config_model.parse(strategy.smoke_config, "smoke_config")
    result = run_search(strategy, cfg, tmp_path / name, log=lambda m: None)
    assert result == json.loads((tmp_path / name / "result.json").read_text())
    assert result_problems(strategy, cfg, result) == []
    assert folder_problems(RunFolder(tmp_path / name), cfg, strategy) == []
    assert strategy.format_result(result).strip()
    # negative control: a result whose sample names another architecture
    tampered = copy.deepcopy(result)
    dim = [d for d in strategy.space(cfg).dims if len(getattr(d, "values", ())) > 1][-1]
    tampered["sample"][dim.name] = next(v for v in dim.values if v != result["sample"][dim.name])
    assert result_problems(strategy, cfg, tampered) != []
