"""Recipe validation (one-line errors naming the field), round trips, lr schedule, CLI recipe errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fbnas.train import Recipe, RecipeError, lr_factor

REPO = Path(__file__).resolve().parents[1]


def test_round_trip_and_defaults():
    r = Recipe(optimizer="adamw", lr=1e-3, ema_decay=0.999, dropout=0.1)
    assert Recipe.from_dict(r.to_dict()) == r
    assert Recipe().to_dict()["optimizer"] == "sgd"


@pytest.mark.parametrize("field,value", [
    ("optimizer", "adam"), ("lr", 0.0), ("lr", -1.0), ("momentum", 1.0), ("weight_decay", -1e-4),
    ("lr_schedule", "linear"), ("warmup_epochs", -1), ("step_size", 0), ("gamma", 0.0), ("label_smoothing", 1.0),
    ("mixup_alpha", -0.2), ("dropout", 1.0), ("drop_path", -0.1), ("ema_decay", 1.0), ("batch_size", 0),
    ("epochs", 0), ("epochs", 2.5), ("seed", -1), ("threads", -2), ("channels_last", "yes"), ("crop_padding", -1),
    ("lr", float("nan")), ("batch_size", True),
])
def test_invalid_field_names_the_field(field, value):
    with pytest.raises(RecipeError) as e:
        Recipe(**{field: value})
    msg = str(e.value)
    assert f"'{field}'" in msg and "\n" not in msg


def test_from_dict_unknown_field():
    with pytest.raises(RecipeError, match="unknown field"):
        Recipe.from_dict({"learning_rate": 0.1})


def test_load_yaml(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("recipe:\n  lr: 0.05\n  optimizer: rmsprop\n")
    r = Recipe.load(f)
    assert r.lr == 0.05 and r.optimizer == "rmsprop"
    f.write_text("lr: [oops\n")
    with pytest.raises(RecipeError, match="r.yaml"):
        Recipe.load(f)


def test_lr_schedule_warmup_cosine_and_step():
    r = Recipe(epochs=10, warmup_epochs=1, lr_schedule="cosine")
    f = [lr_factor(r, s, 10) for s in range(100)]
    assert f[0] < f[5] < f[9] <= 1.0  # warmup rises
    assert abs(f[10] - 1.0) < 1e-9 and f[99] < 0.01  # cosine from 1 to ~0
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    s = Recipe(epochs=10, warmup_epochs=0, lr_schedule="step", step_size=3, gamma=0.5)
    assert [lr_factor(s, e * 10, 10) for e in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]


def test_cli_bad_recipe_is_one_line(tmp_path):
    out = tmp_path / "run"
    spec = str(REPO / "configs/fmnist_small.yaml")
    proc = subprocess.run([sys.executable, "-m", "fbnas.cli", "train", "--arch", spec,
                           "--epochs", "1", "--out", str(out), "--lr", "-3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'lr'" in lines[0], proc.stderr
    assert not out.exists()


def test_cli_bad_arch_is_one_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fbnas.cli", "train", "--arch", "fbnet_zz", "--epochs", "1",
                           "--warmup-epochs", "0", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "fbnet_zz" in proc.stderr
    assert not out.exists()
