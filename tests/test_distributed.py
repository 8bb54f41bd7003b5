"""Data-parallel runs (``fbnas.distributed``) on gloo, 2 ranks x 1 thread, tiny configs.

* A 2-rank DNAS search and a 2-rank DMaskingNAS search keep identical weights and theta on both ranks after
  every optimizer step (all-gathered by ``FBNAS_DDP_CHECK``; a perturbed rank fails the check), two runs give
  identical result.json, and with BN frozen the losses stay within 1e-3 of one process with the same global batch.
* A 2-rank ``fbnas train`` under torchrun killed by SIGKILL and resumed with 2 ranks ends with the weights of an
  uninterrupted 2-rank run.
* The loader's shards: their union is the single process's batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_workers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = ["dnas", "dmasking"]


def test_loader_shards_make_up_the_global_batch():
    from fbnas.data.datasets import synthetic_dataset
    from fbnas.data.loader import AugmentConfig, BatchLoader

    data = synthetic_dataset(True, size=8).subset(51)
    kw = {"batch_size": 16, "shuffle": True, "augment": AugmentConfig(), "seed": 4}
    whole = list(BatchLoader(data, **kw))
    shards = [list(BatchLoader(data, shard=(r, 3), **kw)) for r in range(3)]
    assert len(whole) == 4 and all(len(s) == 4 for s in shards)  # 51 = 3 x 16 + 3: one image per rank at the end
    for b in range(4):
        assert torch.equal(torch.cat([s[b][0] for s in shards]), whole[b][0])
        assert torch.equal(torch.cat([s[b][1] for s in shards]), whole[b][1])
    # a last batch smaller than the world (50 = 3 x 16 + 2) is left out on every rank
    assert len(BatchLoader(data.subset(50), shard=(0, 3), **kw)) == 3
    assert not torch.equal(shards[0][0][0], shards[1][0][0][:6])  # negative control: the shards differ


@pytest.fixture(scope="module")
def ddp_searches(tmp_path_factory) -> Path:
    import torch.multiprocessing as mp

    from fbnas.distributed import free_port

    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(ddp_workers.search_rank, args=(2, free_port(), str(out), NAMES), nprocs=2, join=True)
    return out


def _rows(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", NAMES)
def test_ranks_identical_after_every_step_and_runs_reproduce(ddp_searches, name):
    from fbnas.search.common import search_data

    strategy, cfg = ddp_workers.tiny_config(name)
    space = strategy.space(cfg)
    data = search_data(cfg, space.in_channels, space.input_size)
    s = cfg.schedule
    steps = s.epochs * len(data.weights) + (s.epochs - s.warmup_epochs) * len(data.arch)
    for rank in (0, 1):
        report = json.loads((ddp_searches / f"rank{rank}.json").read_text())
        assert report[name]["checks"] == 3 * steps  # every weight and theta step of the three runs was compared
        assert report["control"].startswith("FBNAS_DDP_CHECK: the ranks hold different weights")
    a, b = (json.loads((ddp_searches / f"{name}_{r}" / "result.json").read_text()) for r in "ab")
    a.pop("timing"), b.pop("timing")
    for r in (a, b):
        r["final"].pop("elapsed_s", None)
    assert a == b
    assert not (ddp_searches / f"{name}_a" / "trials").exists()


@pytest.mark.parametrize("name", NAMES)
def test_loss_matches_one_process_with_the_same_global_batch(ddp_searches, name, tmp_path):
    from fbnas.search.strategy import run_search

    strategy, cfg = ddp_workers.tiny_config(name)
    with ddp_workers.frozen_bn():
        run_search(strategy, cfg, tmp_path / "single", log=lambda m: None)
    ddp, single = _rows(ddp_searches / f"{name}_frozen"), _rows(tmp_path / "single")
    keys = [k for k in ("w_ce", "t_loss", "t_ce") if k in single[-1]]
    assert len(ddp) == len(single) == cfg.schedule.epochs and "t_loss" in keys
    diffs = [abs(d[k] - s[k]) for d, s in zip(ddp, single, strict=True) for k in keys if k in s]
    assert max(diffs) < 1e-3, diffs
    # negative control: the comparison sees a difference where there is one (real BN: the shards' own statistics)
    real = _rows(ddp_searches / f"{name}_a")
    assert max(abs(d[k] - s[k]) for d, s in zip(real, single, strict=True) for k in keys if k in s) > 1e-3


# ---- fbnas train under torchrun -------------------------------------------------------------------------------
EPOCHS = 2


def _train(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fbnas",
            "train", "--arch", str(REPO / "configs" / "fmnist_small.yaml"), "--data", "synthetic", "--epochs",
            str(EPOCHS), "--limit-train", "96", "--limit-test", "32", "--batch-size", "16", "--threads", "1",
            "--seed", "3", "--ema-decay", "0.9", "--crop-padding", "2", "--hflip", "--no-progress", "--out", str(out),
            *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def _state(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)


def test_train_two_ranks_sigkill_then_resume_matches_uninterrupted(tmp_path):
    full = tmp_path / "full"
    proc = subprocess.run(_train(full), capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "killed"
    job = subprocess.Popen(_train(out, "--step-delay", "0.15"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)
    try:
        t0 = time.time()
        while not (out / "checkpoint.pt").exists():
            assert job.poll() is None, "training ended before it could be killed"
            assert time.time() - t0 < 120
            time.sleep(0.02)
        time.sleep(0.2)
        os.killpg(job.pid, signal.SIGKILL)  # torchrun and both ranks
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert int(_state(out)["epoch"]) == 1, "the kill must land in the second epoch"
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              "-m", "fbnas", "train", "--resume", str(out), "--no-progress"],
                             capture_output=True, text=True, timeout=300, env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _state(out), _state(full)
    assert a["epoch"] == b["epoch"] == EPOCHS and a["world_size"] == 2
    for key in ("model", "ema"):
        for name in b[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    # negative control: the uninterrupted run really trained (its weights left the initial state of the resumed run)
    first = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in first] == [1, 2]
    assert json.loads((out / "result.json").read_text())["test_acc"] == first[-1]["test_acc"]
