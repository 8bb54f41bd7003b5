"""Every bad arch-spec input through the CLI (`fbnas profile` and `fbnas export`): a one-line error naming the
problem, a non-zero exit, no traceback, and no output (nor temp) file left behind by export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FBNAS = str(Path(sys.executable).parent / "fbnas")
STEM = ["conv_k3", 16, 2, 1]


def spec_json(block: list) -> str:
    return json.dumps({"name": "bad", "input_size": 32, "stages": [[STEM], [block]]})


# (case id, file name or None for a zoo name, file text, argument when no file, expected parts of the message)
CASES = [
    ("unknown_op", "spec.json", spec_json(["ir_k9", 16, 1, 1]), None,
     ["stage 1 block 0", "unknown op 'ir_k9'", "valid ops:", "ir_k3_se", "conv_k1", "skip"]),
    ("channels_zero", "spec.json", spec_json(["ir_k3", 0, 1, 1]), None,
     ["stage 1 block 0", "'out_channels'", "an integer in 1..16384", "got 0"]),
    ("channels_negative", "spec.yaml", "stages:\n  - [[conv_k3, 16, 2, 1]]\n  - [[ir_k3, -8, 1, 1]]\n", None,
     ["stage 1 block 0", "'out_channels'", "got -8"]),
    ("stride", "spec.json", spec_json(["ir_k3", 16, 3, 1]), None, ["stage 1 block 0", "'stride'", "1 or 2", "got 3"]),
    ("expansion", "spec.json", spec_json(["ir_k3", 16, 1, 1, {"e": 0}]), None,
     ["stage 1 block 0", "'e'", "> 0", "got 0"]),
    ("expansion_negative", "spec.json", spec_json(["ir_k5", 16, 1, 1, {"e": -2.5}]), None, ["'e'", "got -2.5"]),
    ("even_kernel", "spec.json", spec_json(["ir_k3", 16, 1, 1, {"k": 4}]), None,
     ["stage 1 block 0", "'k'", "odd", "got 4"]),
    ("unknown_kwarg", "spec.json", spec_json(["ir_k3", 16, 1, 1, {"expand": 4}]), None,
     ["stage 1 block 0", "unknown kwarg 'expand'", "valid:", "'e'", "'k'"]),
    ("malformed_json", "spec.json", spec_json(["ir_k3", 16, 1, 1])[:-9], None, ["spec.json", "not valid JSON"]),
    ("malformed_yaml", "spec.yaml", "stages:\n  - [[conv_k3, 16, 2, 1]\n  - : :\n", None,
     ["spec.yaml", "not valid YAML", "line 3"]),
    ("not_a_mapping", "spec.json", "[1, 2, 3]\n", None, ["spec.json", "mapping"]),
    ("missing_file", None, None, "does/not/exist.json", ["does/not/exist.json", "file not found"]),
    ("unknown_zoo_name", None, None, "fbnet_v9_z", ["unknown model 'fbnet_v9_z'", "fbnet_a", "fbnet_v3_g"]),
    ("corrupt_checkpoint", "run.pt", "this is not a checkpoint\n", None, ["run.pt", "not an fbnas checkpoint"]),
]


def assert_one_line_error(res: subprocess.CompletedProcess, needles: list[str]) -> None:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("fbnas: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error(tmp_path: Path, case) -> None:
    _, fname, text, arg, needles = case
    if fname is not None:
        (tmp_path / fname).write_text(text)
        arg = str(tmp_path / fname)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # both commands at once: the machine has 2 cores and most of the time is importing torch
    procs = {
        "profile": subprocess.Popen([FBNAS, "profile", arg], cwd=tmp_path, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True),
        "export": subprocess.Popen([FBNAS, "export", arg, "--format", "onnx", "--out", str(out_dir / "m.onnx")],
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), needles)
        assert stdout == "", name
    assert list(out_dir.iterdir()) == []  # no output file, no temp file


def test_profile_bad_option_is_a_one_line_error() -> None:
    res = subprocess.run([FBNAS, "profile", "fbnet_a", "--input-size", "0"], capture_output=True, text=True,
                         timeout=120)
    assert_one_line_error(res, ["--input-size", "positive", "got 0"])


def test_export_failures_leave_nothing_behind(tmp_path: Path) -> None:
    """Bad options: one-line errors, nothing written (a failing numeric check: tests/test_export_onnx.py)."""
    out = tmp_path / "m.onnx"
    cases = [
        (["fbnet_a", "--input-size", "-3"], ["--input-size", ">= 1"]),
        (["fbnet_a", "--num-classes", "0"], ["--num-classes", ">= 1"]),
        (["fbnet_v2_f1", "--tolerance", "-1"], ["--tolerance", ">= 0"]),
        (["fbnet_a", "--format", "torchscript", "--opset", "3"], ["--opset", ">= 7"]),
    ]
    for extra, needles in cases:
        res = subprocess.run([FBNAS, "export", *extra, "--out", str(out)], capture_output=True, text=True,
                             timeout=300)
        assert_one_line_error(res, needles)
        assert list(tmp_path.iterdir()) == []
