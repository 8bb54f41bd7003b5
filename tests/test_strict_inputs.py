"""Strict inputs: unknown keys in spec rows, basic_args and head; non-finite or absurd numbers in specs; IDX files
with no items or non-square images (IDX); splits of different sizes; configs that are binary files or folders;
checkpoints that do not fit their architecture; damaged run files; an infinite temperature; a warm-up longer
than the run; --resume with changed settings; output paths checked before any work. Each refused in one line
(exit 2), each beside a valid case that passes."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import yaml
from cli_contract import FAST_DNAS, SMALL_SPEC, TRAIN_QUICK, assert_one_line_error, cli, make_fmnist, snapshot

from fbnas.arch.spec import ArchSpec
from fbnas.errors import FbnasError, SpecError

BASE = {"name": "x", "input_size": 32, "stages": [[["conv_k3", 8, 2, 1]], [["ir_k3", 16, 1, 1, {"e": 3}]]]}


def _spec(**changes):
    data = json.loads(json.dumps(BASE))
    for path, value in changes.items():
        node = data
        *head, last = path.split("/")
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


SPEC_CASES = [
    ("row mapping typo", _spec(**{"stages/1/0": {"op": "ir_k3", "c": 16, "strid": 2}}), "unknown field 'strid'"),
    ("row mapping both names", _spec(**{"stages/1/0": {"op": "ir_k3", "c": 16, "out_channels": 16}}), "once"),
    ("basic_args typo", _spec(basic_args={"width_divisr": 8}), "basic_args.width_divisr: unknown field"),
    ("head typo", _spec(head={"dropot": 0.1}), "head.dropot: unknown field; valid: bias, drop_path, dropout"),
    ("e inf", _spec(**{"stages/1/0/4": {"e": float("inf")}}), "field 'e' must be a finite number"),
    ("e nan", _spec(**{"stages/1/0/4": {"e": float("nan")}}), "field 'e'"),
    ("e absurd", _spec(**{"stages/1/0/4": {"e": 1000}}), "field 'e' must be at most 64"),
    ("wm inf", _spec(basic_args={"width_multiplier": float("inf")}), "width_multiplier: must be a finite number"),
    ("wm nan", _spec(basic_args={"width_multiplier": float("nan")}), "width_multiplier: must be a finite number"),
    ("wm absurd", _spec(basic_args={"width_multiplier": 1e4}), "more than 16384"),
    ("channels absurd", _spec(**{"stages/1/0/1": 10**7}), "must be an integer in 1..16384"),
    ("repeats absurd", _spec(**{"stages/1/0/3": 10**6}), "'repeats' must be an integer in 1..256"),
    ("input absurd", _spec(input_size=10**6), "'input_size': must be an integer in 8..4096"),
    ("in_channels absurd", _spec(in_channels=10**6), "'in_channels'"),
    ("stride bool", _spec(**{"stages/1/0/2": True}), "'stride' must be 1 or 2"),
    ("repeats bool", _spec(**{"stages/1/0/3": True}), "'repeats'"),
    ("kernel absurd", _spec(**{"stages/1/0/4": {"k": 1001}}), "at most 31"),
    ("hidden absurd", _spec(**{"stages/0/0/1": 4096, "stages/1/0/4": {"e": 6}}), "hidden channels"),
]


@pytest.mark.parametrize("case,data,needle", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_bad_specs_are_one_line(case, data, needle, tmp_path, capsys):
    with pytest.raises(SpecError, match=None) as ei:
        ArchSpec.from_dict(data, "spec.json")
    assert needle in str(ei.value) and "\n" not in str(ei.value)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))  # json writes NaN / Infinity, which Python's reader reads back
    rc, _, err = cli(["profile", path], capsys)
    assert_one_line_error(rc, err, needle)


def test_valid_specs_pass():
    from fbnas.arch.zoo import PUBLISHED, get_spec

    ArchSpec.from_dict(BASE)
    ArchSpec.from_dict(_spec(**{"stages/1/0": {"op": "ir_k3", "c": 16, "s": 2, "n": 2, "kwargs": {"e": 6}}}))
    ArchSpec.from_dict(_spec(basic_args={"width_multiplier": 2.0, "act": "hswish"}, head={"dropout": 0.1,
                                                                                          "drop_path": 0.1}))
    for name in PUBLISHED:  # the whole zoo (up to EfficientNet-B7 at 600 px) is inside the bounds
        ArchSpec.from_dict(get_spec(name).to_dict())


SPACE = {"name": "t", "input_size": 16, "in_channels": 1,
         "candidates": {"c": {"a": ["ir_k3", {"e": 1}], "b": ["skip", {}]}},
         "stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": 8, "s": 1, "n": 2}]}


@pytest.mark.parametrize("change,needle", [
    ({"stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": 8, "s": 1, "n": 2, "strid": 1}]}, "strid"),
    ({"basic_args": {"act": "relu", "widht_divisor": 8}}, "basic_args.widht_divisor: unknown field"),
    ({"head": {"dropuot": 0.1}}, "head.dropuot"),
    ({"stages": [{"fixed": {"op": "conv_k3", "c": 8, "strid": 2}}, {"search": "c", "c": 8}]}, "strid"),
    ({"stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": float("inf")}]}, "c: must be an integer"),
    ({"stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": 8, "n": 10**9}]}, "n: must be an integer"),
    ({"stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": "8"}]}, "c: must be an integer"),
    ({"input_size": 2.5}, "input_size: must be an integer"),
    ({"candidates": {"c": {"a": ["ir_k3", {"e": float("inf")}], "b": ["skip", {}]}}}, "finite"),
    ({"candidates": ["ir_k3"]}, "candidates: must be a mapping"),
])
def test_bad_space_files_are_one_line(change, needle):
    from fbnas.space import space_from_dict

    space_from_dict(SPACE, "space.yaml")  # the valid control
    with pytest.raises(SpecError) as ei:
        space_from_dict({**SPACE, **change}, "space.yaml")
    assert needle in str(ei.value) and "\n" not in str(ei.value)


# ---- data ----------------------------------------------------------------------------------------
def _train_on(data_dir, out, capsys, *extra):
    return cli(["train", "--arch", SMALL_SPEC, "--data", "fashion-mnist", "--data-dir", data_dir, "--epochs", "1",
                "--warmup-epochs", "0", "--threads", "1", "--batch-size", "16", "--no-progress", "--out", out,
                *extra], capsys)


@pytest.mark.parametrize("case,needle", [("zero", "holds no images"), ("nonsquare", "images of 28x20 pixels"),
                                         ("mismatch", "training images are 1x28x28, test images 1x32x32")])
def test_bad_idx_data_is_one_line_and_writes_nothing(case, needle, tmp_path, capsys):
    from cli_contract import write_idx

    folder = make_fmnist(tmp_path / "fm", test_size=32 if case == "mismatch" else None)
    if case == "zero":
        write_idx(folder / "train-images-idx3-ubyte.gz", torch.zeros(0, 28, 28, dtype=torch.uint8))
        write_idx(folder / "train-labels-idx1-ubyte.gz", torch.zeros(0, dtype=torch.uint8))
    elif case == "nonsquare":
        write_idx(folder / "train-images-idx3-ubyte.gz", torch.zeros(64, 28, 20, dtype=torch.uint8))
    out = tmp_path / "run"
    rc, _, err = _train_on(folder, out, capsys)
    assert_one_line_error(rc, err, needle)
    assert not out.exists()


def test_valid_idx_data_trains(tmp_path, capsys):
    rc, _, err = _train_on(make_fmnist(tmp_path / "fm"), tmp_path / "run", capsys)
    assert rc == 0, err


def test_imagefolder_center_crops_non_square_images_instead_of_stretching_them(tmp_path):
    from PIL import Image

    from fbnas.data.datasets import load_dataset

    for split in ("train", "test"):
        d = tmp_path / split / "a"
        d.mkdir(parents=True)
        wide = Image.new("RGB", (60, 20), (255, 0, 0))  # red | green | red: only the centre square is green
        wide.paste((0, 255, 0), (20, 0, 40, 20))
        wide.save(d / "wide.png")
        Image.new("RGB", (16, 16), (0, 0, 255)).save(d / "square.png")
    data = load_dataset("imagefolder", tmp_path, train=True, image_size=8)
    assert tuple(data.images.shape) == (2, 3, 8, 8)
    wide_px = data.images[1]  # sorted: square.png, wide.png
    assert int(wide_px[1].min()) == 255 and int(wide_px[0].max()) == 0  # all green: cropped, not squeezed


def test_search_subset_larger_than_the_dataset_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**FAST_DNAS, "data": {"name": "synthetic", "subset": 5000}}))
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(rc, err, "data.subset: 5000 is more than the 2048 training images")


# ---- config files --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,needle", [("binary", "not a text file"), ("folder", "is a folder"),
                                         ("nul", "not valid YAML"), ("list", "must be a mapping"),
                                         ("missing", "config file not found")])
def test_config_that_is_not_a_yaml_mapping_is_one_line(kind, needle, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "folder":
        path.mkdir()
    elif kind == "nul":
        path.write_bytes(b"seed: 1\x00\n")
    elif kind == "list":
        path.write_text("- 1\n- 2\n")
    for argv in (["search", "dnas", "--config", path, "--out", tmp_path / "o"],
                 ["run", "--config", path, "--out", tmp_path / "o"],
                 ["train", "--arch", SMALL_SPEC, "--recipe", path, "--out", tmp_path / "o"]):
        rc, _, err = cli(argv, capsys)
        assert_one_line_error(rc, err, needle)
    assert not (tmp_path / "o").exists()


def test_spec_and_space_files_that_are_binary_or_folders_are_one_line(tmp_path, capsys):
    binary = tmp_path / "net.yaml"
    binary.write_bytes(bytes(range(256)))
    rc, _, err = cli(["profile", binary], capsys)
    assert_one_line_error(rc, err, "net.yaml")
    from fbnas.space import load_space

    with pytest.raises(SpecError, match="cannot read the file"):
        load_space(binary)
    (tmp_path / "space.yaml").mkdir()
    with pytest.raises(SpecError, match="is a folder"):
        load_space(tmp_path / "space.yaml")


def test_yaml_reads_exponent_floats(tmp_path):
    from fbnas.config import load_config, parse_override
    from fbnas.search.dnas import DnasConfig

    assert parse_override("weights_optimizer.lr=1e6") == {"weights_optimizer": {"lr": 1e6}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(FAST_DNAS) + "theta_optimizer: {lr: 3e-2}\n")
    assert load_config(path, DnasConfig).theta_optimizer.lr == 0.03


# ---- temperature, warm-up ------------------------------------------------------------------------
def test_infinite_or_zero_temperature_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(FAST_DNAS))
    for value, needle in ((".inf", "schedule.tau0: must be a finite number"), ("0", "schedule.tau0: must be > 0")):
        rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", tmp_path / "o", "--set",
                          f"schedule.tau0={value}"], capsys)
        assert_one_line_error(rc, err, needle)


def test_warmup_longer_than_the_run_is_refused(tmp_path, capsys):
    from fbnas.train.recipe import Recipe, RecipeError

    with pytest.raises(RecipeError, match=r"warmup_epochs'?: must be < epochs \(1\) when > 0"):
        Recipe(epochs=1)  # the default warm-up is 1 epoch
    with pytest.raises(RecipeError, match="warmup_epochs"):
        Recipe(epochs=3, warmup_epochs=5)
    Recipe(epochs=1, warmup_epochs=0)
    Recipe(epochs=1, warmup_epochs=0.5)
    Recipe(epochs=2, warmup_epochs=1)
    rc, _, err = cli(["train", "--arch", SMALL_SPEC, "--epochs", "2", "--warmup-epochs", "3", "--out",
                      tmp_path / "o"], capsys)
    assert_one_line_error(rc, err, "warmup_epochs")
    assert not (tmp_path / "o").exists()


def test_an_inherited_warmup_that_does_not_fit_a_shorter_epochs_is_dropped_aloud(tmp_path, capsys):
    quick = list(TRAIN_QUICK)
    if "--warmup-epochs" in quick:
        i = quick.index("--warmup-epochs")
        del quick[i:i + 2]
    rc, _, err = cli(["train", "--arch", SMALL_SPEC, *quick, "--epochs", "1", "--out", tmp_path / "o"], capsys)
    assert rc == 0, err
    assert "no lr warm-up (1 epochs do not fit in --epochs 1" in err
    assert json.loads((tmp_path / "o" / "config.json").read_text())["recipe"]["warmup_epochs"] == 0
    # an explicit one is the user's word: refused, not dropped (the test above)


# ---- resume with other settings ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from fbnas.cli import main

    out = tmp_path_factory.mktemp("t") / "run"
    assert main(["train", "--arch", str(SMALL_SPEC), *TRAIN_QUICK, "--epochs", "1", "--out", str(out)]) == 0
    return out


def test_train_resume_refuses_changed_settings_and_applies_epochs(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = snapshot(out)
    for extra, needle in ((["--lr", "0.05"], "lr (0.4 -> 0.05)"), (["--data", "fashion-mnist"], "--data"),
                          (["--batch-size", "64"], "batch_size (32 -> 64)"),
                          (["--arch", "fbnet_a"], "--arch (fbnet_a is not the run's architecture)")):
        rc, _, err = cli(["train", "--resume", out, *extra], capsys)
        assert_one_line_error(rc, err, "only --epochs can change", needle)
    assert snapshot(out) == before
    rc, _, err = cli(["train", "--resume", out, "--lr", "0.4", "--no-progress"], capsys)  # the run's own: fine
    assert rc == 0, err
    rc, stdout, err = cli(["train", "--resume", out, "--epochs", "2", "--no-progress"], capsys)
    assert rc == 0, err
    assert json.loads(stdout)["epochs"] == 2


def test_search_resume_refuses_changed_fields_naming_them(stopped, tmp_path, capsys):
    out = tmp_path / "s"
    cfg = _stopped_search(stopped, out)
    before = snapshot(out)
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", out, "--resume", "--set", "loss.alpha=0.5",
                      "--set", "seed=4"], capsys)
    assert_one_line_error(rc, err, "--resume keeps the run's config.json", "seed: 3 -> 4", "loss.alpha: 0.2 -> 0.5")
    assert snapshot(out) == before
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", out, "--resume", "--set", "seed=3"], capsys)
    assert rc == 0, err  # an unchanged field is fine
    assert json.loads((out / "result.json").read_text())["epochs"] == 2


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """(config, a search run stopped after its first epoch: a checkpoint, no result), made once."""
    from fbnas.config import load_config
    from fbnas.search.strategy import get_strategy, run_search

    base = tmp_path_factory.mktemp("stopped")
    cfg = base / "c.yaml"
    cfg.write_text(yaml.safe_dump(FAST_DNAS))
    strategy = get_strategy("dnas")
    assert run_search(strategy, load_config(cfg, strategy.config_model), base / "s", log=lambda m: None,
                      stop_after_epoch=0) == {}
    return cfg, base / "s"


def _stopped_search(stopped, out):
    shutil.copytree(stopped[1], out)
    return stopped[0]


# ---- checkpoints and run files -------------------------------------------------------------------
def test_checkpoint_that_does_not_fit_its_architecture_is_one_line(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["arch"]["stages"][1][0][1] = 32  # the spec says 32 channels, the weights have 24
    torch.save(state, out / "checkpoint.pt")
    (out / "result.json").unlink()
    rc, _, err = cli(["train", "--resume", out, "--no-progress"], capsys)
    assert_one_line_error(rc, err, "checkpoint.pt", "does not fit its architecture", "shape")
    rc, _, err = cli(["export", out / "checkpoint.pt", "--out", tmp_path / "m.onnx"], capsys)
    assert_one_line_error(rc, err, "checkpoint.pt", "do not match")
    state["arch"]["stages"][1][0][1] = trained_channels(trained)
    del state["model"][next(iter(state["model"]))]
    torch.save(state, out / "checkpoint.pt")
    rc, _, err = cli(["train", "--resume", out, "--no-progress"], capsys)
    assert_one_line_error(rc, err, "does not fit its architecture (missing")


def trained_channels(run) -> int:
    return torch.load(run / "checkpoint.pt", weights_only=True)["arch"]["stages"][1][0][1]


@pytest.mark.parametrize("damage", ["config", "manifest", "checkpoint_model", "checkpoint_key"])
def test_damaged_search_run_files_on_resume_are_one_line(damage, stopped, tmp_path, capsys):
    out = tmp_path / "s"
    cfg = _stopped_search(stopped, out)
    if damage in ("config", "manifest"):
        path = out / f"{damage}.json"
        path.write_text(path.read_text()[: len(path.read_text()) // 2])  # truncated
        needle = f"{damage}.json: damaged run file"
    else:
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        if damage == "checkpoint_model":
            state["model"].pop(next(iter(state["model"])))
            needle = "does not fit its architecture (missing"
        else:
            del state["opt_weights"]
            needle = "does not fit this run (no 'opt_weights')"
        torch.save(state, out / "checkpoint.pt")
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", out, "--resume"], capsys)
    assert_one_line_error(rc, err, needle)


# ---- output paths, before any work ---------------------------------------------------------------
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["lut", "build", "--arch", "fbnet_a", "--db", blocker / "t.lut"], "--db"),
        (["export", "fbnet_a", "--out", tmp_path], "--out"),
        (["export", "fbnet_a", "--out", blocker / "m.onnx"], "is a file, not a folder"),
        (["train", "--arch", SMALL_SPEC, "--epochs", "2", "--out", blocker / "run"], "is a file, not a folder"),
        (["search", "dnas", "--config", "configs/dnas_fashion_mnist.yaml", "--out", blocker / "s"], "--out"),
        (["lut", "export-ops", "--arch", "fbnet_a", "--out", blocker], "exists and is not a folder"),
        (["scale", "efficientnet_b0", "--phi", "1", "--out", tmp_path], "--out"),
    ]
    for argv, needle in cases:
        rc, _, err = cli(argv, capsys)
        assert_one_line_error(rc, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_an_unwritable_output_folder_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import fbnas.io

    real = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(fbnas.io.os, "access",
                        lambda p, mode: False if str(p) == str(locked) else real(p, mode))  # root can write anywhere
    for argv in (["lut", "build", "--arch", "fbnet_a", "--db", locked / "t.lut"],
                 ["train", "--arch", SMALL_SPEC, "--epochs", "2", "--out", locked / "run"],
                 ["export", "fbnet_a", "--out", locked / "m.onnx"]):
        rc, _, err = cli(argv, capsys)
        assert_one_line_error(rc, err, f"the folder {locked} is not writable")
    assert list(locked.iterdir()) == []


def test_check_output_accepts_a_new_path_in_a_missing_folder(tmp_path):
    from fbnas.io import check_output

    check_output(tmp_path / "a" / "b" / "t.lut", "--db")
    check_output(tmp_path / "a" / "run", "--out", "folder")
    assert list(tmp_path.iterdir()) == []  # it creates nothing
    with pytest.raises(FbnasError, match="is a folder"):
        check_output(tmp_path, "--db")


def test_a_search_started_before_a_config_field_existed_still_resumes(stopped, tmp_path, capsys):
    out = tmp_path / "s"
    cfg = _stopped_search(stopped, out)
    saved = json.loads((out / "config.json").read_text())
    del saved["lut"]["allow_fingerprint"]  # as written by an fbnas without that field
    (out / "config.json").write_text(json.dumps(saved))
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", out, "--resume"], capsys)
    assert rc == 0, err
