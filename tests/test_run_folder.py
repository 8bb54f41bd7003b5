"""The one run folder: an existing run is never replaced implicitly; --overwrite keeps the old run until the new
one has a checkpoint, and puts it back when the new one fails first; checkpoints are weights_only with a schema."""

from __future__ import annotations

import pytest
import torch

from fbnas.errors import FbnasError
from fbnas.runs import RunFolder, load_checkpoint_file


def _finished_run(path) -> RunFolder:
    folder = RunFolder(path, "train")
    folder.prepare(resume=False)
    folder.start({"a": 1}, seed=0)
    folder.save_checkpoint({"model": {"w": torch.ones(2)}})
    folder.finish({"test_acc": 0.9})
    return folder


def test_existing_run_is_refused_then_replaced_only_after_the_new_checkpoint(tmp_path):
    old = _finished_run(tmp_path / "run")
    with pytest.raises(FbnasError, match="--overwrite"):
        RunFolder(tmp_path / "run", "train").prepare(resume=False)
    assert old.read_result() == {"test_acc": 0.9}
    new = RunFolder(tmp_path / "run", "train")
    new.prepare(resume=False, overwrite=True)
    assert not new.is_finished and [p.name.startswith(".run.replaced") for p in tmp_path.iterdir()].count(True) == 1
    new.save_checkpoint({"model": {"w": torch.zeros(2)}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the old run is gone only now
    state = load_checkpoint_file(tmp_path / "run" / "checkpoint.pt", "train")
    assert state["schema"] == "fbnas.train/1" and torch.equal(state["model"]["w"], torch.zeros(2))
    with pytest.raises(FbnasError, match="expected an fbnas search checkpoint"):
        load_checkpoint_file(tmp_path / "run" / "checkpoint.pt", "search")


def test_failed_overwrite_puts_the_old_run_back(tmp_path):
    _finished_run(tmp_path / "run")
    new = RunFolder(tmp_path / "run", "train")
    new.prepare(resume=False, overwrite=True)
    (tmp_path / "run" / "partial.txt").write_text("x")
    new.restore_replaced()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert RunFolder(tmp_path / "run").read_result() == {"test_acc": 0.9}
    with pytest.raises(FbnasError, match="exclude each other"):
        RunFolder(tmp_path / "run").prepare(resume=True, overwrite=True)


class Payload:
    """An arbitrary object: unpickling it could run code, so weights_only loading refuses it."""


def test_checkpoint_with_code_objects_is_refused(tmp_path):
    p = tmp_path / "bad.pt"
    torch.save({"x": Payload()}, p)
    with pytest.raises(FbnasError, match="objects other than tensors"):
        load_checkpoint_file(p)
