"""`fbnas scale`: EfficientNet's compound scaling rules (depth ceil per stage, width to the divisor with the 90%
rule, resolution), the written spec, the measured growth in its report, and one-line errors."""

from __future__ import annotations

import json
import math

import pytest

import fbnas
from fbnas.arch.scaling import compound, flops_factor, scale_spec
from fbnas.arch.spec import load_spec
from fbnas.arch.zoo import get_spec
from fbnas.channels import make_divisible
from fbnas.cli import main


def test_phi_zero_is_the_identity():
    b0 = get_spec("efficientnet_b0")
    c = compound(0)
    assert scale_spec(b0, c.depth, c.width, c.resolution).to_dict() == b0.to_dict()


def test_cli_writes_the_scaled_spec(tmp_path, capsys):
    out = tmp_path / "b0_phi1.yaml"
    assert main(["scale", "efficientnet_b0", "--phi", "1", "--out", str(out), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    scaled, b0 = load_spec(out), get_spec("efficientnet_b0")
    assert scaled.input_size == round(224 * 1.15) == 258
    for s_stage, b_stage in zip(scaled.stages, b0.stages, strict=True):
        for s_row, b_row in zip(s_stage, b_stage, strict=True):
            assert s_row.out_channels == make_divisible(b_row.out_channels * 1.1, 8, round_limit=0.9)
            fixed = b_row.op.startswith("conv")
            assert s_row.repeats == (1 if fixed else math.ceil(b_row.repeats * 1.2))
    assert [r.out_channels for r in scaled.stages[3]] == [48]  # 40 * 1.1 = 44 rounds to 48 (90% rule)
    assert info["macs"] == fbnas.profile(scaled).macs and info["base_macs"] == fbnas.profile(b0).macs
    assert info["macs_growth"] == pytest.approx(info["macs"] / info["base_macs"])
    assert info["predicted_growth"] == pytest.approx(1.2 * 1.1 ** 2 * 1.15 ** 2) == flops_factor(1.2, 1.1, 1.15, 1)


def test_depth_scales_whole_stages():
    """A stage written block by block (FBNet) grows by ceil(n * d) blocks, repeating its last row; shrinking drops
    its last blocks but keeps the first (strided) row."""
    spec = get_spec("fbnet_c")
    grown = scale_spec(spec, depth=1.2)
    for old, new in zip(spec.stages, grown.stages, strict=True):
        n_old, n_new = sum(r.repeats for r in old), sum(r.repeats for r in new)
        fixed = old[0].op in ("conv_k3", "conv_k1")
        assert n_new == (n_old if fixed else math.ceil(n_old * 1.2))
        assert [r.op for r in new] == [r.op for r in old]
    shrunk = scale_spec(spec, depth=0.5)
    for old, new in zip(spec.stages, shrunk.stages, strict=True):
        assert new[0].stride == old[0].stride and sum(r.repeats for r in new) == max(
            1, math.ceil(sum(r.repeats for r in old) * (1 if old[0].op.startswith("conv") else 0.5)))


def test_resolution_alone_grows_macs_about_gamma_squared():
    b0 = get_spec("efficientnet_b0")
    m0 = fbnas.profile(b0).macs
    doubled = scale_spec(b0, resolution=2.0)  # 448 px: every map exactly 2x, so MACs x4 but for the classifier
    assert fbnas.profile(doubled).macs == pytest.approx(4 * m0, rel=0.005)


@pytest.mark.parametrize("argv", [["scale", "efficientnet_b0", "--phi", "1", "--out", "x.txt"],
                                  ["scale", "no_such_model", "--phi", "1", "--out", "x.yaml"],
                                  ["scale", "efficientnet_b0", "--phi", "1", "--alpha", "0.9", "--out", "x.yaml"],
                                  ["scale", "efficientnet_b0", "--phi", "nan", "--out", "x.yaml"]])
def test_bad_input_is_one_line_exit_2(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fbnas: error:") and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
