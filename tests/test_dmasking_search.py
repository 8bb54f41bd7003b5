"""DMaskingNAS search end to end on synthetic data: SIGKILL + --resume is bit-exact; result.json feeds the
foundation tools (profile, build); config errors are one line naming the field."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from search_cli import kill_after_first_checkpoint, read_result, search_cmd, search_env

from fbnas.arch.spec import ArchSpec
from fbnas.cli import main
from fbnas.config import load_config
from fbnas.cost.counting import count
from fbnas.errors import FbnasError
from fbnas.nn.model import FBNetModel
from fbnas.search.dmasking import DMasking, DMaskingConfig

CONFIG = {
    "seed": 5,
    "threads": 1,
    "space": {
        "input_size": 16, "in_channels": 1, "resolutions": [16, 12], "width_divisor": 4, "act": "relu",
        "stem": {"c": [4, 8], "s": 1, "k": 3},
        "stages": [{"c": [4, 8], "s": 1, "n": 1, "e": [1, 2]},
                   {"c": [8, 12], "s": 2, "n": 2, "e": [1, 2], "se": "hsigmoid", "act": "hswish"}],
        "last": {"c": 16}, "dropout": 0.0,
    },
    "data": {"name": "synthetic", "subset": 192, "batch_size": 32},
    "schedule": {"epochs": 3, "warmup_epochs": 1},
    "loss": {"form": "target", "target": 0.05, "penalty": "abs"},
    "result": {"samples": 2},
}


def _cmd(cfg: Path, out: Path, *extra: str) -> list[str]:
    return search_cmd("dmasking", cfg, out, *extra)


_env, _result = search_env, read_result


def test_resume_after_sigkill_is_bit_exact_and_result_is_usable(tmp_path, capsys):
    cfg = tmp_path / "dm.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(cfg, full), check=True, env=_env(), capture_output=True, timeout=300)

    kill_after_first_checkpoint(_cmd(cfg, killed), killed)
    assert not (killed / "result.json").exists()
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] < 2
    again = subprocess.run(_cmd(cfg, killed), env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr
    subprocess.run(_cmd(cfg, killed, "--resume"), check=True, env=_env(), capture_output=True, timeout=300)

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert len([k for k in a["model"] if k.startswith("theta.")]) == 2 + 2 + 3  # res, stem, 2 stages, 3 blocks
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _result(full) == _result(killed)
    hist = json.loads((killed / "theta_history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == [0, 1, 2] and hist["layers"][0] == "res"
    assert (killed / "plots" / "theta_heatmap.png").stat().st_size > 1000

    # result.json: the argmax arch spec with its analytic cost; the foundation tools take it as is
    res = _result(killed)
    spec = ArchSpec.from_dict(res)
    report = count(spec, num_classes=10)
    assert (res["macs"], res["params"]) == (report.macs, report.params)
    assert res["cost"]["value"] == pytest.approx(report.macs / 1e6)
    x = torch.randn(2, 1, spec.input_size, spec.input_size)
    assert FBNetModel(spec, 10)(x).shape == (2, 10)
    assert len(res["samples"]) == 2
    capsys.readouterr()
    assert main(["profile", str(killed / "result.json"), "--num-classes", "10", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] == res["macs"]


def test_shipped_config_and_quick_preset_resolve():
    full = load_config("configs/dmasking_fashion_mnist.yaml", DMaskingConfig)
    quick = load_config("configs/dmasking_fashion_mnist.yaml", DMaskingConfig, "quick")
    assert full.loss.form == "target" and full.loss.target and full.loss.cost == "macs"
    assert quick.schedule.epochs <= full.schedule.epochs and quick.data.subset < full.data.subset
    space = DMasking().space(full)
    assert space.resolutions[0] == 28 and len(space.resolutions) > 1


def test_config_errors_are_one_line(tmp_path, capsys):
    bad = {**CONFIG, "space": {**CONFIG["space"], "stem": {"c": [4, 6]}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["search", "dmasking", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "space.stem.c" in err[0]
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(CONFIG))
    with pytest.raises(FbnasError, match=r"loss\.cost"):
        load_config(str(good), DMaskingConfig, None, ["loss.cost=latency"])
