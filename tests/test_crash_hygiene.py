"""Crash hygiene: starting or resuming a run removes the temp files a killed writer of that run left behind (and
nothing else); a failed atomic write leaves no temp file and the previous complete file; a resumed search
rebuilds its history files from the checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from cli_contract import FAST_DNAS, SMALL_SPEC, TRAIN_QUICK, cli

from fbnas.io import atomic_write, atomic_write_json, remove_orphaned_temps
from fbnas.runs import RunFolder

ORPHANS = [".checkpoint.pt.k2j4x_9a.tmp", ".metrics.jsonl.abcdefgh.tmp", "plots/.theta_heatmap.png.0a1b2c3d.tmp"]
KEEP = ["notes.tmp", ".hidden.tmp", "plots/mine.png", ".config.json.short.tmp", "data.abcdefgh.tmp"]


def _litter(folder):
    for name in ORPHANS + KEEP:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")


def test_remove_orphaned_temps_takes_only_atomic_write_leftovers(tmp_path):
    _litter(tmp_path)
    removed = remove_orphaned_temps(tmp_path, ("plots",))
    assert sorted(str(p.relative_to(tmp_path)) for p in removed) == sorted(ORPHANS)
    assert all((tmp_path / k).exists() for k in KEEP)


def test_a_failed_atomic_write_leaves_the_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})

    def broken(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_training_start_and_resume_clean_their_folder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    _litter(out)
    (out / "manifest.json").write_text("{}")  # a start that was killed before its first checkpoint
    rc, _, err = cli(["train", "--arch", SMALL_SPEC, *TRAIN_QUICK, "--epochs", "1", "--out", out], capsys)
    assert rc == 0, err
    assert not any((out / o).exists() for o in ORPHANS) and all((out / k).exists() for k in KEEP)
    _litter(out)
    rc, _, err = cli(["train", "--resume", out, "--no-progress"], capsys)
    assert rc == 0, err
    assert not any((out / o).exists() for o in ORPHANS) and all((out / k).exists() for k in KEEP)


def test_search_resume_cleans_its_folder_and_rebuilds_its_history(tmp_path, capsys):
    from fbnas.config import load_config
    from fbnas.search.strategy import get_strategy, run_search

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(FAST_DNAS))
    out = tmp_path / "s"
    strategy = get_strategy("dnas")
    run_search(strategy, load_config(cfg, strategy.config_model), out, log=lambda m: None, stop_after_epoch=0)
    # a kill during the history write: the history files one epoch short (or gone), temp files left behind
    (out / "theta_history.json").write_text(json.dumps({"layers": [], "candidates": [], "epochs": []}))
    (out / "metrics.jsonl").write_text("")
    (out / "plots" / "theta_heatmap.png").unlink()
    _litter(out)
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", out, "--resume"], capsys)
    assert rc == 0, err
    assert not any((out / o).exists() for o in ORPHANS) and all((out / k).exists() for k in KEEP)
    assert [e["epoch"] for e in json.loads((out / "theta_history.json").read_text())["epochs"]] == [0, 1]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "plots" / "theta_heatmap.png").stat().st_size > 1000


def test_a_folder_of_another_run_kind_is_not_cleaned_by_others(tmp_path):
    """Only the run being started or resumed cleans its own folder (trials are their own run folders)."""
    parent = RunFolder(tmp_path / "p", "search")
    parent.prepare(resume=False)
    trial = parent.trial("t0")
    trial.path.mkdir(parents=True)
    shutil.copy(__file__, trial.path / ".checkpoint.pt.abcdefgh.tmp")
    parent.prepare(resume=True)
    assert (trial.path / ".checkpoint.pt.abcdefgh.tmp").exists()
    trial.prepare(resume=False)
    assert not (trial.path / ".checkpoint.pt.abcdefgh.tmp").exists()
