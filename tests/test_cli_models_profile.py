"""`fbnas models` and `fbnas profile`: JSON shapes, plain counts, stage sums, checkpoints and tables.

(Accuracy against published numbers and FlopCounterMode is tested in test_zoo_cost.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fbnas
from fbnas.arch.zoo import PUBLISHED, get_spec, zoo_names
from fbnas.cli import main

FBNAS = str(Path(sys.executable).parent / "fbnas")
MODEL_KEYS = {"name", "input_size", "macs", "params", "published_macs", "published_params"}


def cli_json(capsys, *argv: str):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_models_json_through_the_console_script() -> None:
    res = subprocess.run([FBNAS, "models", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == zoo_names() and len(rows) >= 16
    for r in rows:
        assert MODEL_KEYS <= set(r)
        pub = PUBLISHED[r["name"]]
        assert all(isinstance(r[k], int) for k in ("input_size", "macs", "params", "params_total", "pooled"))
        assert (r["published_macs"], r["published_params"]) == (pub.macs, pub.params)
        report = fbnas.profile(r["name"], num_classes=pub.num_classes)
        assert (r["input_size"], r["macs"], r["params"], r["params_total"], r["pooled"]) == (
            get_spec(r["name"]).input_size, report.macs, report.params, report.params_total, report.pooled)
        if r["published_macs"] is not None:
            assert abs(r["macs_diff_pct"] - (r["macs_as_published"] / r["published_macs"] - 1) * 100) < 1e-3
    fbnet = [r for r in rows if r["family"] == "fbnet"]
    assert len(fbnet) == 16 and all(r["macs_equal"] and r["params_equal"] for r in fbnet)
    # mobile-vision's MACs are ours plus the pooled elements, its params the conv/linear weights
    assert all(r["macs_as_published"] == r["macs"] + r["pooled"] and r["params_as_published"] == r["params"]
               for r in fbnet)


def test_models_at_another_input_size(capsys) -> None:
    rows = cli_json(capsys, "models", "--format", "json", "--input-size", "160")
    for r in rows:
        pub = PUBLISHED[r["name"]]
        assert r["input_size"] == 160 and r["macs"] == fbnas.profile(r["name"], 160, pub.num_classes).macs
        # published MACs hold at the paper's resolution only; params do not depend on it
        assert (r["published_macs"] is None) == (get_spec(r["name"]).input_size != 160 or pub.macs is None)
        assert r["published_params"] == PUBLISHED[r["name"]].params


def test_models_table(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "published" in out.splitlines()[0] and "MACs (M)" in out.splitlines()[0]
    for name in zoo_names():
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "378.136" in out and "378.233" in out  # fbnet_c: ours and published
    assert main(["models", "--family", "nope"]) == 2


def test_profile_json_stage_and_block_sums(capsys) -> None:
    data = cli_json(capsys, "profile", "fbnet_v3_a", "--format", "json", "--input-size", "128", "--num-classes", "10")
    assert {"macs", "params", "params_total", "input_size", "stages", "blocks", "num_classes"} <= set(data)
    assert data["input_size"] == 128 and data["num_classes"] == 10
    for key in ("macs", "params", "params_total"):
        assert sum(s[key] for s in data["stages"]) == data[key]
    head = data["stages"][-1]
    assert head["stage"] == "head" and head["macs"] == head["params"] == data["blocks"][-1]["out_channels"] * 10
    assert len(data["blocks"]) == len(get_spec("fbnet_v3_a").expand())
    assert data["macs"] == fbnas.profile("fbnet_v3_a", 128, 10).macs
    assert data["stages"][0]["out_hw"] == [64, 64]


def test_profile_table_with_blocks(capsys, tmp_path: Path) -> None:
    spec_file = get_spec("fbnet_v2_f1").copy(name="my_net").save(tmp_path / "my_net.yaml")
    assert main(["profile", str(spec_file), "--blocks", "--input-size", "96"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("my_net: input 3x96x96, 1000 classes")
    report = fbnas.profile("fbnet_v2_f1", 96)
    assert f"MACs {report.macs:,}" in out and f"params {report.params:,}" in out
    for b in report.blocks:
        assert b.name in out
    assert main(["profile", str(spec_file)]) == 0
    assert "stage0.block0" not in capsys.readouterr().out  # per-block rows only with --blocks


def test_profile_checkpoint_uses_its_classes_channels_and_size(capsys, tmp_path: Path) -> None:
    from test_export_onnx import SMALL_SPEC, make_checkpoint

    ckpt = make_checkpoint(tmp_path / "run", num_classes=7)
    expected = fbnas.profile(SMALL_SPEC, 28, 7)
    for arg in (str(ckpt), str(tmp_path / "run")):
        data = cli_json(capsys, "profile", arg, "--format", "json")
        assert (data["num_classes"], data["input_size"], data["in_channels"]) == (7, 28, 1)
        assert data["macs"] == expected.macs and data["params_total"] == expected.params_total
    data = cli_json(capsys, "profile", str(ckpt), "--format", "json", "--num-classes", "3", "--input-size", "56")
    assert data["macs"] == fbnas.profile(SMALL_SPEC, 56, 3).macs
    assert fbnas.create_model(str(ckpt), num_classes=7).spec.in_channels == 1  # resolve_arch reads checkpoints
