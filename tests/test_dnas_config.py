"""Config errors are one line naming the field; presets and --set overrides merge as documented."""

from __future__ import annotations

import math

import pytest
import yaml

from fbnas.cli import main
from fbnas.config import load_config
from fbnas.errors import FbnasError
from fbnas.search.config import ScheduleSection
from fbnas.search.dnas import DnasConfig


def _write(tmp_path, data) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_shipped_config_and_quick_preset_resolve():
    full = load_config("configs/dnas_fashion_mnist.yaml", DnasConfig)
    quick = load_config("configs/dnas_fashion_mnist.yaml", DnasConfig, "paper")  # the paper's setting, small
    assert full.loss.alpha == 0.2 and full.loss.beta == 0.6 and full.theta_optimizer.weight_decay == 5e-4
    # theta lr: the paper's 0.01 on the quick preset (the latency-term check), 0.1 on the short full search
    assert quick.theta_optimizer.lr == 0.01 and full.theta_optimizer.lr == 0.1
    assert full.schedule.tau0 == 5.0 and full.data.theta_split == 0.2 and full.weights_optimizer.momentum == 0.9
    # temperature: the quick preset decays per epoch as the paper does; the full search's 6 epochs span the
    # paper's whole range (5 -> 5 exp(-0.045 * 79) over its 80 search epochs)
    assert quick.schedule.tau_decay == 0.045
    paper_last = 5.0 * math.exp(-0.045 * 79)
    fs = full.schedule
    full_last = fs.tau0 * math.exp(-fs.tau_decay * (fs.epochs - fs.warmup_epochs - 1))
    assert abs(full_last / paper_last - 1) < 0.1
    assert quick.schedule.epochs < fs.epochs and quick.data.subset < full.data.subset
    assert quick.space.in_channels == 1
    # the paper preset keeps the paper's loss (the latency-term check); the full search aims at a budget
    assert quick.loss.form == "paper" and quick.loss.target is None
    assert full.loss.form == "target" and full.loss.target is not None and full.loss.target > 0
    # the quick preset (make search) decides its distribution and guarantees its latency
    fast = load_config("configs/dnas_fashion_mnist.yaml", DnasConfig, "quick")
    assert fast.constraints.latency_ms == fast.loss.target and fast.theta_optimizer.lr >= 0.1
    assert fast.schedule.tau0 * math.exp(-fast.schedule.tau_decay * (fast.schedule.epochs - 2)) < 1.0


@pytest.mark.parametrize("override, field", [
    ({"schedule": {"epochs": "ten"}}, "schedule.epochs"),
    ({"loss": {"form": "papr"}}, "loss.form"),
    ({"supernet": {"mode": "medium"}}, "supernet.mode"),
    ({"schedule": {"warmup_epochs": 99}}, "schedule.warmup_epochs"),
    ({"loss": {"cost": "latency"}, "lut": {"path": None}}, "lut.path"),
    ({"loss": {"alpah": 0.3}}, "loss.alpah"),
])
def test_bad_fields_name_the_field(tmp_path, override, field):
    path = _write(tmp_path, {"loss": {"cost": "macs"}, **override} if "lut" not in override else override)
    with pytest.raises(FbnasError, match=field.replace(".", r"\.")) as e:
        load_config(path, DnasConfig)
    assert "\n" not in str(e.value)


def test_cli_prints_one_line_error(tmp_path, capsys):
    path = _write(tmp_path, {"schedule": {"epochs": 0}, "loss": {"cost": "macs"}})
    assert main(["search", "dnas", "--config", path, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "schedule.epochs" in err[0]
    assert main(["search", "dnas", "--config", path, "--out", str(tmp_path / "o"), "--preset", "nope"]) == 2
    assert "presets.nope" in capsys.readouterr().err


def test_set_overrides_and_preset(tmp_path):
    path = _write(tmp_path, {"schedule": {"epochs": 5}, "presets": {"quick": {"schedule": {"epochs": 2}}}})
    cfg = load_config(path, DnasConfig, "quick", ["loss.form=none", "schedule.warmup_epochs=1", "loss.cost=macs"])
    assert cfg.schedule.to_dict() == {**ScheduleSection().to_dict(), "epochs": 2, "warmup_epochs": 1}
    assert cfg.loss.form == "none"
