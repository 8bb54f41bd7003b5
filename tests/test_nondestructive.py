"""Non-destructive runs, the same for training and searches, before and after the first checkpoint: a folder that
holds a run (a checkpoint or a result) is never replaced implicitly; --overwrite replaces it only once the new run
has a trained checkpoint and puts it back when the new run fails first; a folder that holds only the start of a
run (manifest, config) is started again."""

from __future__ import annotations

import json

import pytest
import yaml
from cli_contract import FAST_DNAS, SMALL_SPEC, TRAIN_QUICK, assert_one_line_error, cli, snapshot


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "dnas.yaml"
    path.write_text(yaml.safe_dump(FAST_DNAS))
    return path


def _start(kind: str, out, cfg_file, capsys, *extra):
    if kind == "train":
        return cli(["train", "--arch", SMALL_SPEC, *TRAIN_QUICK, "--epochs", "2", "--out", out, *extra], capsys)
    return cli(["search", "dnas", "--config", cfg_file, "--out", out, *extra], capsys)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cfg_file):
    """A finished training run and a finished search (made once; every test copies them)."""
    from fbnas.cli import main

    base = tmp_path_factory.mktemp("runs")

    for kind in ("train", "search"):
        argv = (["train", "--arch", str(SMALL_SPEC), *TRAIN_QUICK, "--epochs", "2", "--out", str(base / kind)]
                if kind == "train" else ["search", "dnas", "--config", str(cfg_file), "--out", str(base / kind)])
        assert main(argv) == 0
    return base


def _copy(finished, kind, tmp_path):
    import shutil

    dst = tmp_path / kind
    shutil.copytree(finished / kind, dst)
    return dst


@pytest.mark.parametrize("kind", ["train", "search"])
def test_a_finished_run_is_refused_in_one_line_and_left_intact(kind, finished, cfg_file, tmp_path, capsys):
    out = _copy(finished, kind, tmp_path)
    before = snapshot(out)
    rc, _, err = _start(kind, out, cfg_file, capsys)
    assert_one_line_error(rc, err, str(out), "--resume", "--overwrite")
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["train", "search"])
def test_a_run_with_a_checkpoint_but_no_result_is_refused_and_left_intact(kind, finished, cfg_file, tmp_path,
                                                                           capsys):
    out = _copy(finished, kind, tmp_path)
    (out / "result.json").unlink()
    before = snapshot(out)
    rc, _, err = _start(kind, out, cfg_file, capsys)
    assert_one_line_error(rc, err, "checkpoint.pt", "--resume")
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["train", "search"])
def test_a_run_stopped_before_its_first_checkpoint_is_started_again(kind, finished, cfg_file, tmp_path, capsys):
    out = _copy(finished, kind, tmp_path)
    for name in ("checkpoint.pt", "result.json"):
        (out / name).unlink()
    rc, _, err = _start(kind, out, cfg_file, capsys)
    assert rc == 0, err
    assert (out / "result.json").exists()


@pytest.mark.parametrize("kind", ["train", "search"])
def test_a_failed_overwrite_puts_the_old_run_back_unchanged(kind, finished, cfg_file, tmp_path, capsys):
    out = _copy(finished, kind, tmp_path)
    before = snapshot(out)
    bad_lr = ["--lr", "100"] if kind == "train" else ["--set", "weights_optimizer.lr=1e6"]
    rc, _, err = _start(kind, out, cfg_file, capsys, "--overwrite", *bad_lr)  # diverges in its first epoch
    assert_one_line_error(rc, err, "diverged", "the previous run", "put back unchanged")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [kind]  # nothing moved aside is left behind


@pytest.mark.parametrize("kind", ["train", "search"])
def test_overwrite_replaces_the_run_once_the_new_one_has_its_checkpoint(kind, finished, cfg_file, tmp_path, capsys):
    out = _copy(finished, kind, tmp_path)
    old_started = json.loads((out / "manifest.json").read_text())["started_at"]
    (out / "marker.txt").write_text("old run")
    rc, _, err = _start(kind, out, cfg_file, capsys, "--overwrite")
    assert rc == 0, err
    assert not (out / "marker.txt").exists() and (out / "result.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [kind]
    assert json.loads((out / "manifest.json").read_text())["started_at"] >= old_started


@pytest.mark.parametrize("kind", ["train", "search"])
def test_resume_of_a_finished_run_keeps_its_result(kind, finished, cfg_file, tmp_path, capsys):
    out = _copy(finished, kind, tmp_path)
    result = json.loads((out / "result.json").read_text())
    if kind == "train":
        rc, _, err = cli(["train", "--resume", out, "--no-progress"], capsys)
    else:
        rc, _, err = _start(kind, out, cfg_file, capsys, "--resume")
    assert rc == 0, err
    again = json.loads((out / "result.json").read_text())
    key = "test_acc" if kind == "train" else "choice_names"
    assert again[key] == result[key]


def test_train_resume_without_a_checkpoint_is_one_line(tmp_path, capsys):
    rc, _, err = cli(["train", "--resume", tmp_path / "nothing"], capsys)
    assert_one_line_error(rc, err, "no checkpoint to resume from")
