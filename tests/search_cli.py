"""Helpers for tests that run ``fbnas search STRATEGY`` in a subprocess and kill it mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def search_cmd(strategy: str, cfg: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fbnas.cli", "search", strategy, "--config", str(cfg), "--out", str(out), *extra]


def search_env() -> dict:
    return {**os.environ, "PYTHONHASHSEED": "0"}


def read_result(out: Path) -> dict:
    """result.json without its timing block (the only part that differs between identical runs)."""
    data = json.loads((out / "result.json").read_text())
    data.pop("timing")
    return data


def kill_after_first_checkpoint(cmd: list[str], out: Path, timeout: float = 240) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``out/checkpoint.pt`` exists."""
    proc = subprocess.Popen(cmd, env=search_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, "search ended before writing a checkpoint"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
