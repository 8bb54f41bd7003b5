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
