"""Kill a training run (SIGKILL) in its second epoch, resume it, get the weights of an uninterrupted run.

Also: Ctrl-C (SIGINT) saves a mid-epoch checkpoint, exits 130 and resumes bit-exactly; the checkpoint has the
documented keys and model_from_checkpoint rebuilds the model.
"""

from __future__ import annotations

import gzip
import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "configs" / "fmnist_small.yaml"
EPOCHS = 3


def _write_idx(path: Path, array: torch.Tensor) -> None:
    dims = list(array.shape)
    raw = struct.pack(">I", 0x0800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims) + array.numpy().tobytes()
    path.write_bytes(gzip.compress(raw))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fm")
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 192), ("t10k", 64)):
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        images = torch.randint(0, 80, (n, 28, 28), generator=g, dtype=torch.uint8)
        for i, k in enumerate(labels.tolist()):
            images[i, 2 * k:2 * k + 6, 4:24] = 230
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def _cmd(data_dir: Path, out: Path, *extra: str) -> list[str]:
    # augmentation, dropout, drop path, mixup and EMA on, so every random and stateful piece has to be restored
    return [sys.executable, "-m", "fbnas.cli", "train", "--arch", str(SPEC), "--data", "fashion-mnist",
            "--data-dir", str(data_dir), "--epochs", str(EPOCHS), "--out", str(out), "--threads", "1",
            "--batch-size", "32", "--seed", "3", "--dropout", "0.2", "--drop-path", "0.1", "--mixup-alpha", "0.2",
            "--ema-decay", "0.9", "--crop-padding", "2", "--hflip", "--no-progress", *extra]


def _weights(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)


def _assert_same_weights(a: dict, b: dict) -> None:
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    assert a["epoch"] == b["epoch"] == EPOCHS


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    proc = subprocess.run(_cmd(data_dir, out), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not predicate():
        assert proc.poll() is None, "training finished before it could be interrupted"
        assert time.time() - t0 < timeout, "timed out waiting for the first checkpoint"
        time.sleep(0.02)


def _checkpoint_epoch(out: Path) -> int:
    if not (out / "checkpoint.pt").exists():
        return 0
    return int(_weights(out)["epoch"])


def test_sigkill_in_second_epoch_then_resume_matches(data_dir, uninterrupted, tmp_path):
    out = tmp_path / "run"
    # a delay per step makes epoch 2 last >1 s, so the kill lands inside it
    proc = subprocess.Popen(_cmd(data_dir, out, "--step-delay", "0.2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (out / "checkpoint.pt").exists(), proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert _checkpoint_epoch(out) == 1, "the kill must land during epoch 2"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    resumed = subprocess.run([sys.executable, "-m", "fbnas.cli", "train", "--resume", str(out), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(_weights(out), _weights(uninterrupted))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    full_rows = [json.loads(x) for x in (uninterrupted / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in full_rows]


def test_sigint_saves_mid_epoch_exits_130_and_resumes_exactly(data_dir, uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(data_dir, out, "--step-delay", "0.2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (out / "checkpoint.pt").exists(), proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    state = _weights(out)
    assert state["epoch"] == 1 and 0 < state["step"] < 6  # a mid-epoch checkpoint
    resumed = subprocess.run([sys.executable, "-m", "fbnas.cli", "train", "--resume", str(out), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(_weights(out), _weights(uninterrupted))


def test_checkpoint_keys_and_model_from_checkpoint(uninterrupted):
    from fbnas.train.checkpoint import model_from_checkpoint

    state = _weights(uninterrupted)
    for key in ("arch", "num_classes", "model", "ema", "optimizer", "scheduler", "rng", "epoch", "recipe", "data"):
        assert key in state
    assert set(state["rng"]) == {"torch", "numpy", "python"}
    model, spec = model_from_checkpoint(uninterrupted / "checkpoint.pt")
    assert spec.in_channels == 1 and spec.input_size == 28 and not model.training
    for name, tensor in model.state_dict().items():  # EMA weights are the ones loaded
        assert torch.equal(tensor, state["ema"][name])
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    config = json.loads((uninterrupted / "config.json").read_text())
    assert config["recipe"]["epochs"] == EPOCHS and config["arch"]["in_channels"] == 1
