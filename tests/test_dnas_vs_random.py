"""The DNAS-vs-random benchmark's bookkeeping: seeds, reuse of finished runs, the median comparison."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dnas_vs_random.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dnas_vs_random", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_seeds_default_and_list(bench):
    assert bench.train_seeds(argparse.Namespace(seed=3, train_seeds=None)) == [3]
    assert bench.train_seeds(argparse.Namespace(seed=3, train_seeds="0, 1")) == [0, 1]
    for bad in ("0,x", "1,1", ","):
        with pytest.raises(SystemExit, match="--train-seeds"):
            bench.train_seeds(argparse.Namespace(seed=0, train_seeds=bad))


def test_run_name_keeps_first_seed_folder(bench):
    assert bench.run_name("dnas", 0, 0) == "dnas"
    assert bench.run_name("random2", 1, 0) == "random2.seed1"


def test_compare_uses_mean_over_seeds(bench):
    rows = [{"test_acc_by_seed": [0.90, 0.94]}]  # DNAS: mean 0.92
    rows += [{"test_acc_by_seed": [a, a]} for a in (0.91, 0.93, 0.915, 0.95, 0.90)]
    out = bench.compare(rows)
    assert out["random_median_test_acc"] == pytest.approx(0.915)
    assert out["dnas_test_acc"] == pytest.approx(0.92)
    assert out["dnas_at_least_median"] is True
    assert out["dnas_rank"] == 3  # two of the five are better
    rows[0]["test_acc_by_seed"] = [0.90, 0.92]  # mean 0.91 < median
    assert bench.compare(rows)["dnas_at_least_median"] is False


def test_finished_reads_last_epoch(bench, tmp_path):
    assert not bench.finished(tmp_path, 3)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 2}) + "\n")
    assert not bench.finished(tmp_path, 3)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 2}) + "\n" + json.dumps({"epoch": 3}) + "\n")
    assert bench.finished(tmp_path, 3)


def test_run_of_another_architecture_is_not_reused(bench, tmp_path):
    arch = {"name": "random0", "stages": [[["ir_k3", 24, 1, 1, {"e": 3}]]]}
    bench.check_same_arch(tmp_path, arch)  # no run yet
    (tmp_path / "config.json").write_text(json.dumps({"arch": {**arch, "name": "other"}}))
    bench.check_same_arch(tmp_path, arch)  # same blocks under another name: reused
    (tmp_path / "config.json").write_text(json.dumps({"arch": {**arch, "stages": [[["ir_k5", 24, 1, 1, {}]]]}}))
    with pytest.raises(SystemExit, match="different architecture"):
        bench.check_same_arch(tmp_path, arch)


def test_equal_finished_run_is_copied_from_reuse_folder(bench, tmp_path):
    arch = {"name": "random3", "stages": [[["ir_k3", 24, 1, 1, {"e": 3}]]]}
    old = tmp_path / "old" / "random0"
    old.mkdir(parents=True)
    config = {"arch": {**arch, "name": "random0"}, "recipe": {"epochs": 3, "seed": 1, "threads": 1},
              "data": {"limit_train": None}}
    (old / "config.json").write_text(json.dumps(config))
    (old / "metrics.jsonl").write_text(json.dumps({"epoch": 3, "test_acc": 0.9}) + "\n")
    args = argparse.Namespace(epochs=3, batch_size=None, lr=None, threads=1, limit_train=None,
                              reuse=[str(tmp_path / "old")])
    target = tmp_path / "new" / "random3.seed1"
    target.parent.mkdir()
    bench.copy_equal_run(arch, 0, args, target)  # other seed: not copied
    assert not target.exists()
    bench.copy_equal_run(arch, 1, args, target)
    assert bench.finished(target, 3)
    other = tmp_path / "new" / "random4"
    bench.copy_equal_run({**arch, "stages": []}, 1, args, other)  # other blocks: not copied
    assert not other.exists()
