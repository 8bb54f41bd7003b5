"""One CLI error path: every FbnasError, expected OS error (disk full, permission, is-a-folder, not-a-folder) and
MemoryError is one line ``fbnas: error: ...`` with exit 2; a usage error too; anything else is one line
``fbnas: internal error: ...`` asking for a report, exit 1, and FBNAS_TRACEBACK=1 shows the traceback."""

from __future__ import annotations

import errno
import os

import pytest
from cli_contract import assert_one_line_error, cli

import fbnas.commands.models as models
from fbnas.errors import FbnasError


def _raising(exc):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize("exc,needle", [
    (FbnasError("net.yaml: stage 1: bad\nsecond line"), "net.yaml: stage 1: bad second line"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoint.pt"),
     "/data/run/checkpoint.pt: No space left on device"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/x"), "/data/x: Permission denied"),
    (OSError(errno.EPERM, "Operation not permitted", "/data/y"), "Operation not permitted"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out.onnx"), "out.onnx: Is a directory"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/x"), "f/x: Not a directory"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/x"), "Read-only file system"),
    (MemoryError(), "out of memory"),
])
def test_user_and_machine_errors_are_one_line_exit_2(exc, needle, monkeypatch, capsys):
    monkeypatch.setattr(models, "run", _raising(exc))
    rc, _, err = cli(["models"], capsys)
    assert_one_line_error(rc, err, needle)


@pytest.mark.parametrize("exc", [RuntimeError("boom\nat line 2"), KeyError("x"), OSError(errno.ECONNRESET, "reset"),
                                 ZeroDivisionError("division by zero")])
def test_unexpected_errors_are_one_internal_error_line_exit_1(exc, monkeypatch, capsys):
    monkeypatch.setattr(models, "run", _raising(exc))
    monkeypatch.delenv("FBNAS_TRACEBACK", raising=False)
    rc, _, err = cli(["models"], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"fbnas: internal error: {type(exc).__name__}: ")
    assert "please report it with the command line; FBNAS_TRACEBACK=1 shows the traceback" in lines[0]
    assert "Traceback" not in err


def test_fbnas_traceback_reraises(monkeypatch, capsys):
    monkeypatch.setattr(models, "run", _raising(RuntimeError("boom")))
    monkeypatch.setenv("FBNAS_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli(["models"], capsys)


def test_usage_errors_are_one_line(capsys):
    for argv, needle in ((["search", "dnas"], "--config"), (["nope"], "invalid choice"),
                         (["export", "fbnet_a", "--format", "pdf", "--out", "x"], "--format")):
        rc, _, err = cli(argv, capsys)
        assert_one_line_error(rc, err, needle, "--help")
    rc, out, _ = cli(["--help"], capsys)
    assert rc == 0 and "usage:" in out


def test_a_full_disk_during_a_write_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, capsys):
    import fbnas.io

    out = tmp_path / "b1.yaml"
    rc, _, err = cli(["scale", "efficientnet_b0", "--phi", "1", "--out", out], capsys)
    assert rc == 0, err
    before = out.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fbnas.io.os, "fsync", full)
    rc, _, err = cli(["scale", "efficientnet_b0", "--phi", "2", "--out", out], capsys)
    assert_one_line_error(rc, err, str(out), "No space left on device")
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["b1.yaml"]


def test_a_full_disk_during_a_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    from cli_contract import SMALL_SPEC, TRAIN_QUICK

    import fbnas.io

    real = fbnas.io.os.fsync

    def full_for_checkpoints(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".checkpoint.pt."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(fbnas.io.os, "fsync", full_for_checkpoints)
    out = tmp_path / "run"
    rc, _, err = cli(["train", "--arch", SMALL_SPEC, *TRAIN_QUICK, "--epochs", "1", "--out", out], capsys)
    assert_one_line_error(rc, err, "checkpoint.pt: No space left on device")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
