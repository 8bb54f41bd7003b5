"""The CLI contract the robustness tests assert: one line on stderr, exit 2, no traceback, and the output folder
unchanged or holding only complete files."""

from __future__ import annotations

import copy
import gzip
import hashlib
import struct
from pathlib import Path

import torch

from fbnas.cli import main
from fbnas.search.dnas import Dnas

SMOKE_DNAS = copy.deepcopy(Dnas.smoke_config)  # the strategy's own smoke search
SMALL_SPEC = Path(__file__).resolve().parents[1] / "configs" / "fmnist_small.yaml"
# the smallest search that trains weights and theta: 4 weight batches and 1 theta batch per epoch
FAST_DNAS = {**SMOKE_DNAS, "data": {"name": "synthetic", "subset": 192, "batch_size": 32},
             "schedule": {"epochs": 2, "warmup_epochs": 1}, "result": {"samples": 1}}
# a seconds-long training run on generated data
TRAIN_QUICK = ["--data", "synthetic", "--limit-train", "128", "--limit-test", "64", "--batch-size", "32",
               "--threads", "1", "--no-progress", "--warmup-epochs", "0"]


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``fbnas ARGV`` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one non-empty stderr line ``fbnas: error: ...`` holding every needle; returns the line."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("fbnas: error: "), lines[0]
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256): equal snapshots mean an untouched folder."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_idx(path: Path, array: torch.Tensor) -> None:
    dims = list(array.shape)
    raw = struct.pack(">I", 0x0800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims) + array.numpy().tobytes()
    path.write_bytes(gzip.compress(raw))


def make_fmnist(folder: Path, n_train: int = 64, n_test: int = 32, size: int = 28, test_size: int | None = None
                ) -> Path:
    """Fashion-MNIST-shaped IDX files of random images."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n, s in (("train", n_train, size), ("t10k", n_test, test_size or size)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", torch.randint(0, 255, (n, s, s), generator=g,
                                                                            dtype=torch.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", torch.randint(0, 10, (n,), generator=g,
                                                                            dtype=torch.uint8))
    return folder
