"""``fbnas run``: search, retrain, a latency-matched random baseline, ONNX export, measured latency and a report.

Every stage writes its own outputs into the pipeline's run folder and is skipped when they are already there,
so ``--resume`` after an interruption redoes nothing that finished:

    DIR/search/             the search's run folder (``fbnas search``)
    DIR/trials/found/       the found architecture retrained (``fbnas train`` run folders)
    DIR/trials/sample<i>/   architectures sampled from the learned distribution (``pipeline.retrain.samples``)
    DIR/trials/random<i>/   the baseline: uniform architectures of the same space with the found one's cost
    DIR/model.onnx          the retrained found network, BN folded, checked in onnxruntime
    DIR/report.html         one self-contained page (images inline); DIR/report.json the same numbers
    DIR/result.json         the summary printed at the end
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError
from fbnas.io import atomic_write_json
from fbnas.runs import RunFolder
from fbnas.search.config import SearchConfig
from fbnas.search.strategy import Strategy, run_search


def _trial_recipe(cfg: SearchConfig, seed: int):
    from fbnas.train.recipe import Recipe

    r = cfg.pipeline.retrain
    return Recipe.from_dict({**r.recipe, "epochs": r.epochs, "seed": seed, "threads": cfg.threads or 0},
                            "pipeline.retrain.recipe")


def train_trial(folder: RunFolder, arch: dict, cfg: SearchConfig, log: Callable[[str], Any]) -> dict[str, Any]:
    """Train ``arch`` in the trial folder (resume a partial run, reuse a finished one); its final metrics."""
    from fbnas.train.run import train

    if folder.is_finished:
        return folder.read_result() or {}
    recipe = _trial_recipe(cfg, cfg.seed)
    log(f"training {folder.path.name}: {recipe.epochs} epochs -> {folder.path}")
    return train(arch, recipe, cfg.data.name, folder.path, data_dir=cfg.data.dir, resume=folder.has_checkpoint,
                 progress=False, limit_train=cfg.pipeline.retrain.limit_train)


def measure_latencies(specs: dict[str, Any], lut, num_classes: int, rounds: int) -> dict[str, float]:
    """Each trained network timed end to end on this machine with the table's backend, threads, statistic and
    dtype (int8: quantized statically, as the table's blocks were)."""
    from fbnas.lut.measure import Runner
    from fbnas.nn.model import FBNetModel

    runner = Runner(lut.backend, lut.threads, lut.channels_last, lut.statistic, lut.dtype)
    items = {name: (FBNetModel(spec, num_classes).eval(), [1, spec.in_channels, spec.input_size, spec.input_size])
             for name, spec in specs.items()}
    stats = runner.measure(items, rounds=rounds)
    return {name: float(stats[name]["value_ms"]) for name in specs}


def export_found(trial: RunFolder, out: Path) -> dict[str, Any]:
    """The retrained found network as ONNX (BN folded; onnxruntime agrees with PyTorch); reused when present."""
    from fbnas.export import export_model, load_source

    src = load_source(str(trial.path))
    shape = (1, src.spec.in_channels, src.spec.input_size, src.spec.input_size)
    res = export_model(src.model, out, "onnx", shape)
    return {"path": str(out), "max_abs_diff": res.max_abs_diff, "size_bytes": res.size_bytes,
            "folded_pairs": res.folded_pairs}


def onnx_latency_ms(path: Path, shape: tuple[int, ...], threads: int, rounds: int) -> float:
    """The exported model in onnxruntime on this machine (the fbnas timing protocol)."""
    from fbnas.lut import target_script

    sess = target_script.make_session(path.read_bytes(), threads)
    stats = target_script.measure_all({"m": target_script.session_callable(sess, list(shape))}, rounds=rounds,
                                      statistic=target_script.resolve_statistic("auto", threads))
    return float(stats["m"]["value_ms"])


def run_pipeline(strategy: Strategy, cfg: SearchConfig, out: str | Path, resume: bool = False,
                 log: Callable[[str], Any] = print, source: str = "config", overwrite: bool = False
                 ) -> dict[str, Any]:
    """Every stage of the pipeline in ``out`` (see the module docstring); returns its summary."""
    folder = RunFolder(out, "pipeline")
    resumed = folder.prepare(resume=resume, overwrite=overwrite)
    if resumed and folder.read_config() not in (None, cfg.to_dict()):
        raise FbnasError(f"{folder.path}: --resume with a different config than the pipeline's config.json")
    try:
        return _stages(strategy, cfg, folder, resumed, log, source)
    except BaseException:
        folder.restore_replaced()
        raise


def _stages(strategy: Strategy, cfg: SearchConfig, folder: RunFolder, resumed: bool, log: Callable[[str], Any],
            source: str) -> dict[str, Any]:
    from fbnas.arch.spec import ArchSpec
    from fbnas.cost.counting import count
    from fbnas.pipeline.baseline import baseline_entries
    from fbnas.pipeline.report import write_report
    from fbnas.search.common import cost_model_for, load_latency_table

    folder.start(cfg.to_dict(), seed=cfg.seed, resumed=resumed)
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    search_dir = folder.path / "search"
    sf = RunFolder(search_dir, "search")
    if sf.is_finished:
        result = sf.read_result()
        log(f"search: reusing {sf.file(sf.RESULT)}")
    else:
        result = run_search(strategy, cfg, search_dir, resume=sf.has_checkpoint, log=log, source=source)
    times["search_s"] = result.get("timing", {}).get("search_seconds", time.perf_counter() - t0)

    space = strategy.space(cfg)
    num_classes = int(result["num_classes"])
    lut = load_latency_table(cfg.replace(lut={**cfg.lut.to_dict(), "build": False}), space, num_classes) \
        if cfg.lut.path else None
    cost_model = cost_model_for(cfg, space, num_classes, lut) if lut is None else lut.cost_model(space)

    t0 = time.perf_counter()
    base, match = baseline_entries(space, cost_model, result["choices"], cfg.pipeline.baseline.num,
                                   cfg.pipeline.baseline.tolerance, cfg.pipeline.baseline.seed)
    nets: list[dict[str, Any]] = [{"name": "found", "role": "found", "arch": result["arch"],
                                   "sample": result["sample"], "choices": result["choices"]}]
    for i, s in enumerate(result.get("samples", [])[:cfg.pipeline.retrain.samples]):
        nets.append({"name": f"sample{i}", "role": "sampled", "arch": s["arch"], "sample": s["sample"],
                     "choices": s["choices"]})
    nets += [{**b, "role": "baseline"} for b in base]
    for net in nets:
        metrics = train_trial(folder.trial(net["name"], "train"), net["arch"], cfg, log)
        net["test_acc"] = metrics.get("test_acc")
        net["cost"] = cost_model.of_choices(net["choices"])
        spec = ArchSpec.from_dict(net["arch"])
        net["predicted_ms"] = lut.predict(spec).total_ms if lut is not None else None
        report = count(spec, num_classes=num_classes)
        net["macs"], net["params"] = int(report.macs), int(report.params)
    times["retrain_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    onnx_path = folder.file("model.onnx")
    export = folder.read_json("export.json")
    if export is None or not onnx_path.exists():
        export = export_found(folder.trial("found", "train"), onnx_path)
        atomic_write_json(folder.file("export.json"), export)
    times["export_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    latency: dict[str, Any] = {}
    if lut is not None:
        specs = {n["name"]: ArchSpec.from_dict(n["arch"]) for n in nets}
        measured = measure_latencies(specs, lut, num_classes, cfg.pipeline.latency_rounds)
        for n in nets:
            n["measured_ms"] = measured[n["name"]]
        found_spec = specs["found"]
        shape = (1, found_spec.in_channels, found_spec.input_size, found_spec.input_size)
        latency = {"backend": lut.backend, "threads": lut.threads, "statistic": lut.statistic,
                   "found_predicted_ms": nets[0]["predicted_ms"], "found_measured_ms": nets[0]["measured_ms"],
                   "onnx_measured_ms": onnx_latency_ms(onnx_path, shape, lut.threads, cfg.pipeline.latency_rounds)}
    times["latency_s"] = time.perf_counter() - t0

    summary = summarize(strategy, cfg, result, nets, match, export, latency, times, folder, source)
    write_report(folder, summary)
    folder.finish(summary)
    return summary


def summarize(strategy: Strategy, cfg: SearchConfig, result: dict, nets: list[dict], match: dict, export: dict,
              latency: dict, times: dict, folder: RunFolder, source: str) -> dict[str, Any]:
    """The pipeline's numbers: the found net, the baseline comparison in one sentence, stage times, commands."""
    import statistics

    found = nets[0]
    base = [n["test_acc"] for n in nets if n["role"] == "baseline" and n["test_acc"] is not None]
    comparison: dict[str, Any] = {"found_test_acc": found["test_acc"], "baseline_test_acc": base}
    if base:
        median = statistics.median(base)
        comparison.update({"baseline_median": median, "baseline_best": max(base),
                           "found_at_least_median": found["test_acc"] >= median,
                           "found_rank": 1 + sum(b > found["test_acc"] for b in base)})
        unit = "ms" if match["cost_kind"] == "latency" else match["unit"]
        comparison["sentence"] = (
            f"the searched net: {100 * found['test_acc']:.2f}%; {len(base)} random nets of its "
            f"{'latency' if match['cost_kind'] == 'latency' else 'cost'} "
            f"({match['found_cost']:.3g} {unit} +-{100 * match['tolerance']:.0f}%): median {100 * median:.2f}%, "
            f"best {100 * max(base):.2f}%")
    else:
        comparison["sentence"] = f"the searched net: {100 * found['test_acc']:.2f}% (no baseline configured)"
    dist = result.get("distribution")
    return {
        "strategy": strategy.name, "out": str(folder.path), "config": source,
        "found": {k: found.get(k) for k in ("sample", "arch", "test_acc", "predicted_ms", "measured_ms", "macs",
                                            "params", "cost")},
        "choice_names": result.get("choice_names"),
        "distribution": dist, "constraints": result.get("constraints"), "cost": result.get("cost"),
        "comparison": comparison, "baseline_matching": match, "nets": nets, "export": export, "latency": latency,
        "retrain": cfg.pipeline.retrain.to_dict(), "times_s": times,
        "commands": reproduce_commands(strategy, source, folder),
        "report": str(folder.file("report.html")), "onnx": export["path"],
    }


def reproduce_commands(strategy: Strategy, source: str, folder: RunFolder) -> list[str]:
    import shlex
    import sys

    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "fbnas", *sys.argv[1:]]
    run = " ".join(shlex.quote(a) for a in argv) if len(argv) > 1 and "run" in argv else \
        f"fbnas run --config {source} --out {folder.path}"
    return [run,
            f"fbnas search {strategy.name} --config {folder.path / 'config.json'} --out SEARCH_DIR",
            f"fbnas train --arch {folder.path / 'search' / 'result.json'} --out TRAIN_DIR",
            f"fbnas export {folder.path / 'trials' / 'found'} --format onnx --out model.onnx"]
