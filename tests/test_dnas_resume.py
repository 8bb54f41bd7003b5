"""A search killed with SIGKILL after its first checkpoint resumes to the same theta and result.json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
import yaml
from search_cli import kill_after_first_checkpoint, read_result, search_cmd, search_env

CONFIG = {
    "seed": 3,
    "threads": 1,
    "space": {"name": "fbnet_v1", "input_size": 16, "in_channels": 1, "width_multiplier": 0.25},
    "data": {"name": "synthetic", "subset": 320, "batch_size": 32},
    "schedule": {"epochs": 3, "warmup_epochs": 1},
    "loss": {"cost": "macs", "cost_scale": 10.0},
    "result": {"samples": 3},
}


def _cmd(cfg: Path, out: Path, *extra: str) -> list[str]:
    return search_cmd("dnas", cfg, out, *extra)


_env, _result = search_env, read_result


def test_resume_after_sigkill_is_bit_exact(tmp_path):
    cfg = tmp_path / "dnas.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(cfg, full), check=True, env=_env(), capture_output=True, timeout=300)

    kill_after_first_checkpoint(_cmd(cfg, killed), killed)
    assert not (killed / "result.json").exists()
    epoch_at_kill = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert epoch_at_kill < CONFIG["schedule"]["epochs"] - 1

    # without --resume the folder is protected
    again = subprocess.run(_cmd(cfg, killed), env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr
    subprocess.run(_cmd(cfg, killed, "--resume"), check=True, env=_env(), capture_output=True, timeout=300)

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    theta_keys = [k for k in a["model"] if k.endswith(".theta")]
    assert len(theta_keys) == 22
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _result(full) == _result(killed)
    hist = json.loads((killed / "theta_history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == [0, 1, 2]
    assert (killed / "plots" / "theta_heatmap.png").stat().st_size > 1000
    res = _result(killed)
    assert len(res["samples"]) == 3 and res["arch"]["stages"]
