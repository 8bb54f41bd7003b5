"""JointNAS killed with SIGKILL during its coarse stage (trials running in a local process pool) and resumed:
no finished trial is trained again, and result.json equals the one of an uninterrupted run."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import time
from pathlib import Path

import yaml
from search_cli import read_result, search_cmd, search_env

from fbnas.search.strategy import strategies


def _config(tmp_path: Path) -> Path:
    cfg = copy.deepcopy(strategies()["jointnas"].smoke_config)
    cfg["jointnas"]["proxy"].update({"train_images": 480, "epochs": 3})
    cfg["jointnas"]["executor"] = {"kind": "process", "workers": 2, "threads": 1}
    path = tmp_path / "jointnas.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _finished(out: Path) -> dict[str, tuple[int, int]]:
    return {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "trials").glob("*/result.json")}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_sigkill_in_the_coarse_stage_then_resume(tmp_path):
    cfg = _config(tmp_path)
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(search_cmd("jointnas", cfg, full), check=True, env=search_env(), capture_output=True, timeout=600)
    n_trials = len(_finished(full))
    assert n_trials == 9  # 4 calibration + 3 coarse + 2 verified

    proc = subprocess.Popen(search_cmd("jointnas", cfg, killed), env=search_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(_finished(killed)) < 2:
        assert proc.poll() is None, "the search ended before two trials finished"
        assert time.time() < deadline
        time.sleep(0.02)
    workers = _children(proc.pid)
    assert workers  # the process pool is up
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while any(Path(f"/proc/{w}").exists() and _state(w) != "Z" for w in workers):  # orphans end themselves
        assert time.time() < deadline, f"orphaned workers still running: {workers}"
        time.sleep(0.1)
    before = _finished(killed)
    assert 2 <= len(before) < n_trials and not (killed / "result.json").exists()

    again = subprocess.run(search_cmd("jointnas", cfg, killed), env=search_env(), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr  # the folder is protected
    assert _finished(killed) == before
    resumed = subprocess.run(search_cmd("jointnas", cfg, killed, "--resume"), env=search_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    after = _finished(killed)
    assert len(after) == n_trials
    assert all(after[t] == before[t] for t in before)  # no finished trial trained (or rewritten) again
    assert "already finished (read back, not retrained)" in resumed.stdout
    assert read_result(full) == read_result(killed)
    for t in after:  # and every trial is the same as in the uninterrupted run
        a = json.loads((full / "trials" / t / "result.json").read_text())
        b = json.loads((killed / "trials" / t / "result.json").read_text())
        assert a["curve"] == b["curve"] and a["sample"] == b["sample"], t
