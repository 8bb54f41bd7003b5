"""Divergence guards: a diverging search or training run stops in one line naming the epoch and the likely cause,
never writes a non-finite checkpoint, and what it kept resumes and exports; JSON output never holds NaN."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch
import yaml
from cli_contract import FAST_DNAS, SMALL_SPEC, SMOKE_DNAS, TRAIN_QUICK, assert_one_line_error, cli

from fbnas.errors import DivergenceError, FbnasError
from fbnas.guards import nonfinite_metrics, nonfinite_tensors


@pytest.fixture()
def smoke_cfg(tmp_path):
    path = tmp_path / "dnas.yaml"
    path.write_text(yaml.safe_dump(FAST_DNAS))
    return path


def _finite_checkpoint(path) -> dict:
    state = torch.load(path, weights_only=True)
    assert nonfinite_tensors({k: state[k] for k in state if k in ("model", "opt_weights", "arch_update", "ema",
                                                                   "optimizer")}) == []
    return state


def test_search_with_huge_lr_stops_in_one_line_and_its_checkpoint_resumes_and_exports(tmp_path, smoke_cfg, capsys):
    out = tmp_path / "s"
    rc, _, err = cli(["search", "dnas", "--config", smoke_cfg, "--out", out, "--set", "weights_optimizer.lr=1e6"],
                     capsys)
    line = assert_one_line_error(rc, err, "search diverged in epoch 0", "weights_optimizer.lr 1e+06 is too high",
                                 "kept", "checkpoint.pt")
    assert "nan" in line or "inf" in line
    state = _finite_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == -1 and state["history"] == []  # the initial state: nothing non-finite replaced it
    assert (out / "metrics.jsonl").read_text() == ""
    assert not (out / "result.json").exists()
    assert json.loads((out / "manifest.json").read_text())["stops"][0]["reason"].startswith("search diverged")
    # the kept checkpoint resumes (bit-exactly, so the same steps diverge again: the same one line) ...
    rc, _, err = cli(["search", "dnas", "--config", smoke_cfg, "--out", out, "--resume", "--set",
                      "weights_optimizer.lr=1e6"], capsys)
    assert_one_line_error(rc, err, "search diverged in epoch 0")
    # ... resuming with another config is refused, naming the field
    rc, _, err = cli(["search", "dnas", "--config", smoke_cfg, "--out", out, "--resume"], capsys)
    assert_one_line_error(rc, err, "weights_optimizer.lr", "1000000.0 -> 0.1")
    # ... and its architecture exports
    rc, stdout, err = cli(["export", out, "--out", tmp_path / "found.onnx"], capsys)
    assert rc == 0, err
    assert (tmp_path / "found.onnx").stat().st_size > 1000 and "dnas_checkpoint" in stdout


def test_search_keeps_its_last_finite_checkpoint_when_bn_statistics_blow_up(tmp_path, smoke_cfg, capsys,
                                                                            monkeypatch):
    import fbnas.search.alternating as alternating

    original = alternating.train_weights

    def poisoned(net, loader, opt, sched, update, epoch, arch_loader=None):
        rec = original(net, loader, opt, sched, update, epoch, arch_loader)
        if epoch == 1:  # finite losses, but infinite BN running variances (what a huge lr can leave behind)
            bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(math.inf)
        return rec

    monkeypatch.setattr(alternating, "train_weights", poisoned)
    out = tmp_path / "s"
    rc, _, err = cli(["search", "dnas", "--config", smoke_cfg, "--out", out], capsys)
    assert_one_line_error(rc, err, "search diverged in epoch 1", "running_var", "weights_optimizer.lr",
                          "after epoch 0")
    state = _finite_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(alternating, "train_weights", original)
    rc, _, err = cli(["search", "dnas", "--config", smoke_cfg, "--out", out, "--resume"], capsys)
    assert rc == 0, err  # the kept checkpoint resumes to the end
    assert json.loads((out / "result.json").read_text())["epochs"] == 2


def test_search_theta_loss_divergence_names_the_theta_optimizer(tmp_path, smoke_cfg, capsys, monkeypatch):
    import fbnas.search.updates as updates

    original = updates.dnas_loss

    def nan_loss(logits, y, cost, cfg):
        loss, parts = original(logits, y, cost, cfg)
        return loss * math.nan, parts

    monkeypatch.setattr(updates, "dnas_loss", nan_loss)
    rc, _, err = cli(["search", "dnas", "--config", smoke_cfg, "--out", tmp_path / "s", "--set",
                      "schedule.warmup_epochs=0"], capsys)
    assert_one_line_error(rc, err, "epoch 0 (theta step 1 of 1)", "the architecture loss is nan",
                          "theta_optimizer.lr", "Gumbel temperature", "its initial state")


def _train(out, capsys, *extra):
    return cli(["train", "--arch", SMALL_SPEC, *TRAIN_QUICK, "--out", out, *extra], capsys)


def test_training_eval_nan_stops_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    fit_module = importlib.import_module("fbnas.train.fit")

    original = fit_module.evaluate
    calls = {"n": 0}

    def nan_in_epoch_2(model, loader):
        calls["n"] += 1
        loss, acc = original(model, loader)
        return (math.nan, acc) if calls["n"] == 2 else (loss, acc)

    monkeypatch.setattr(fit_module, "evaluate", nan_in_epoch_2)
    out = tmp_path / "t"
    rc, _, err = _train(out, capsys, "--epochs", "3")
    assert_one_line_error(rc, err, "training diverged in epoch 2", "test_loss", "likely cause: lr",
                          "after epoch 1")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]  # valid JSON, no NaN
    assert [r["epoch"] for r in rows] == [1]
    assert _finite_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    rc, _, err = cli(["export", out, "--out", tmp_path / "t.onnx"], capsys)
    assert rc == 0, err
    monkeypatch.setattr(fit_module, "evaluate", original)
    rc, stdout, err = cli(["train", "--resume", out, "--no-progress"], capsys)
    assert rc == 0, err
    assert math.isfinite(json.loads(stdout)["test_loss"])


def test_training_bn_blow_up_is_caught_before_the_checkpoint(tmp_path, capsys, monkeypatch):
    fit_module = importlib.import_module("fbnas.train.fit")

    original = fit_module.train_epoch

    def poisoned(model, loader, *args, epoch=0, **kw):
        totals = original(model, loader, *args, epoch=epoch, **kw)
        if epoch == 1:
            next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_var.fill_(math.inf)
        return totals

    monkeypatch.setattr(fit_module, "train_epoch", poisoned)
    out = tmp_path / "t"
    rc, _, err = _train(out, capsys, "--epochs", "3")
    assert_one_line_error(rc, err, "epoch 2", "BN running statistics are not finite")
    assert _finite_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_training_that_diverges_in_its_first_epoch_writes_no_checkpoint(tmp_path, capsys):
    out = tmp_path / "t"
    rc, _, err = _train(out, capsys, "--epochs", "2", "--lr", "100")
    assert_one_line_error(rc, err, "training diverged in epoch 1", "lr 100 is too high", "no checkpoint was written")
    assert not (out / "checkpoint.pt").exists() and not (out / "result.json").exists()


def test_valid_training_is_not_stopped(tmp_path, capsys):
    rc, stdout, err = _train(tmp_path / "t", capsys, "--epochs", "1")
    assert rc == 0, err
    assert math.isfinite(json.loads(stdout)["test_loss"])


def test_fit_checks_its_record_and_state():
    from fbnas.train.fit import Fit, check_finite
    from fbnas.train.recipe import Recipe

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    state = Fit(model, Recipe(epochs=2, warmup_epochs=0), 4)
    check_finite(state, {"train_loss": 0.5, "lr": 0.1}, 0)  # finite: passes
    with pytest.raises(DivergenceError, match="val_acc is not finite"):
        check_finite(state, {"train_loss": 0.5, "val_acc": math.nan}, 0)
    model[1].running_mean[0] = -math.inf
    with pytest.raises(DivergenceError, match="BN running statistics"):
        check_finite(state, {"train_loss": 0.5}, 0)
    model[1].running_mean.zero_()
    model[0].weight.data[0, 0, 0, 0] = math.nan
    with pytest.raises(DivergenceError, match="the weights are not finite"):
        check_finite(state, None, 0)


def test_guards_find_nonfinite_values():
    assert nonfinite_metrics({"a": 1.0, "b": [0.5, math.inf], "c": "x"}) == ["b"]
    assert nonfinite_metrics({"a": 1.0, "b": 2}) == []
    assert nonfinite_tensors({"w": torch.ones(2), "s": {"m": torch.tensor([0.0, math.nan])},
                              "i": torch.ones(2, dtype=torch.long)}) == ["s.m"]


def test_json_output_never_holds_nan(tmp_path):
    from fbnas.io import append_jsonl, atomic_write_json, read_jsonl
    from fbnas.runs import RunFolder

    with pytest.raises(FbnasError, match=r"refusing to write nan at rows\[1\]\.loss"):
        atomic_write_json(tmp_path / "a.json", {"rows": [{"loss": 1.0}, {"loss": math.nan}]})
    assert not (tmp_path / "a.json").exists() and list(tmp_path.iterdir()) == []
    atomic_write_json(tmp_path / "b.json", {"x": math.inf, "y": [1.5, -math.inf]}, nonfinite="null")
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": None, "y": [1.5, None]}
    folder = RunFolder(tmp_path / "run", "train")
    folder.prepare(resume=False)
    folder.write_metrics([{"epoch": 1, "test_loss": 0.3}])
    with pytest.raises(FbnasError, match="test_loss"):
        folder.write_metrics([{"epoch": 1, "test_loss": 0.3}, {"epoch": 2, "test_loss": math.nan}])
    assert folder.read_metrics() == [{"epoch": 1, "test_loss": 0.3}]  # the previous complete file stays
    with pytest.raises(FbnasError):
        append_jsonl(folder.file("x.jsonl"), {"v": math.nan})
    append_jsonl(folder.file("x.jsonl"), {"v": 1.0})
    assert read_jsonl(folder.file("x.jsonl")) == [{"v": 1.0}]


@pytest.mark.parametrize("text", ["weights_optimizer: {lr: .nan}", "weights_optimizer: {lr: .inf}",
                                  "schedule: {tau0: .inf}", "loss: {alpha: .nan}"])
def test_nan_and_inf_are_refused_by_search_config_fields(tmp_path, capsys, text):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(SMOKE_DNAS) + text + "\n")
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(rc, err, "must be a finite number")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("field", ["lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing"])
def test_nan_is_refused_by_recipe_fields(tmp_path, capsys, field):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"{field}: .nan\n")
    rc, _, err = cli(["train", "--arch", SMALL_SPEC, "--recipe", recipe, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(rc, err, field)


@pytest.mark.parametrize("strategy", ["dnas", "dmasking"])
def test_non_finite_architecture_parameters_name_the_theta_optimizer(strategy, tmp_path, capsys, monkeypatch):
    from fbnas.search.strategy import get_strategy
    from fbnas.search.updates import GumbelUpdate

    original = GumbelUpdate.train_epoch

    def poisoned(self, net, loader, epoch):
        out = original(self, net, loader, epoch)
        with torch.no_grad():
            net.arch_parameters()[0].fill_(math.inf)
        return out

    monkeypatch.setattr(GumbelUpdate, "train_epoch", poisoned)
    cfg = {**get_strategy(strategy).smoke_config, "schedule": {"epochs": 2, "warmup_epochs": 0}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, _, err = cli(["search", strategy, "--config", path, "--out", tmp_path / "s"], capsys)
    assert_one_line_error(rc, err, "search diverged in epoch 0", "theta", "likely cause: theta_optimizer.lr",
                          "its initial state")
    assert _finite_checkpoint(tmp_path / "s" / "checkpoint.pt")["epoch"] == -1
