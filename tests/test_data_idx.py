"""IDX parsing and the one-line errors of bad dataset inputs (missing folder, truncated, bad magic, count mismatch)."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fbnas.data import DataError, load_dataset, read_idx

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "configs" / "fmnist_small.yaml"


def write_idx(path: Path, array: torch.Tensor, magic: int | None = None, compress: bool = True) -> None:
    dims = list(array.shape)
    magic = (0x0800 | len(dims)) if magic is None else magic
    raw = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + array.numpy().tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_fmnist(folder: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """A tiny Fashion-MNIST look-alike: class k has a bright band at rows 2k..2k+5."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
        for i, k in enumerate(labels.tolist()):
            images[i, 2 * k:2 * k + 6, 4:24] = 220
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def test_read_idx_round_trip(tmp_path):
    x = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    write_idx(tmp_path / "a.gz", x)
    write_idx(tmp_path / "b", x, compress=False)
    assert torch.equal(read_idx(tmp_path / "a.gz"), x)
    assert torch.equal(read_idx(tmp_path / "b"), x)


def test_load_fashion_mnist_layout(tmp_path):
    make_fmnist(tmp_path / "fm", n_train=30, n_test=12)
    tr = load_dataset("fashion-mnist", tmp_path / "fm", train=True)
    te = load_dataset("fashion-mnist", tmp_path / "fm", train=False)
    assert tr.images.shape == (30, 1, 28, 28) and tr.images.dtype == torch.uint8
    assert tr.labels.dtype == torch.int64 and tr.labels.shape == (30,)
    assert te.images.shape == (12, 1, 28, 28) and tr.num_classes == 10 and len(tr.mean) == 1
    # the band of class k is where the file says
    k = int(tr.labels[0])
    assert int(tr.images[0, 0, 2 * k + 1, 10]) == 220


def test_fbnas_data_env_var(tmp_path, monkeypatch):
    make_fmnist(tmp_path / "fm")
    monkeypatch.setenv("FBNAS_DATA", str(tmp_path / "fm"))
    assert len(load_dataset("fashion-mnist")) == 40


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").exists(),
                    reason="system Fashion-MNIST not installed")
def test_real_fashion_mnist_test_split():
    te = load_dataset("fashion-mnist", "/usr/share/datasets/fashion-mnist", train=False)
    assert te.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(te.labels).tolist() == [1000] * 10


# ---- bad inputs -----------------------------------------------------------------------------------
def _truncate(folder: Path) -> Path:
    f = folder / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    return f


def _bad_magic(folder: Path) -> Path:
    f = folder / "train-images-idx3-ubyte.gz"
    write_idx(f, torch.zeros(40, 28, 28, dtype=torch.uint8), magic=0x0000BEEF)
    return f


def _size_mismatch(folder: Path) -> Path:
    f = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[:-100]))  # gzip intact, payload shorter than the header says
    return f


def _count_mismatch(folder: Path) -> Path:
    f = folder / "train-labels-idx1-ubyte.gz"
    write_idx(f, torch.zeros(39, dtype=torch.uint8))
    return f


def _not_gzip(folder: Path) -> Path:
    f = folder / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(b"\x1f\x8b" + os.urandom(200))
    return f


@pytest.mark.parametrize("break_it", [_truncate, _bad_magic, _size_mismatch, _count_mismatch, _not_gzip])
def test_bad_idx_raises_data_error_naming_the_file(tmp_path, break_it):
    folder = make_fmnist(tmp_path / "fm")
    bad = break_it(folder)
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", folder, train=bad.name.startswith("train"))
    assert bad.name in str(e.value) and "\n" not in str(e.value)


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbnas.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def _assert_one_line_error(proc: subprocess.CompletedProcess, must_contain: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fbnas: error:"), proc.stderr
    assert must_contain in lines[0]


@pytest.mark.parametrize("case", ["missing", "truncated", "magic", "count"])
def test_cli_bad_data_one_line_error_and_no_output(tmp_path, case):
    folder = make_fmnist(tmp_path / "fm")
    expect = {"missing": str(tmp_path / "nowhere"), "truncated": _truncate(folder).name if case == "truncated" else "",
              "magic": "", "count": ""}[case]
    if case == "magic":
        expect = _bad_magic(folder).name
    elif case == "count":
        expect = _count_mismatch(folder).name
    data_dir = tmp_path / "nowhere" if case == "missing" else folder
    out = tmp_path / "run"
    proc = _run_cli(["train", "--arch", str(SPEC), "--data", "fashion-mnist", "--data-dir", str(data_dir),
                     "--epochs", "1", "--warmup-epochs", "0", "--out", str(out), "--threads", "1"], cwd=tmp_path)
    _assert_one_line_error(proc, expect)
    assert not out.exists(), "a failed run must not leave a run folder behind"
