"""Seed 004's families in the zoo: params exactly as published, MACs within 0.5% (as published, i.e. without the
classifier for ESPNetV2), analytic MACs == FlopCounterMode / 2 and params == sum(numel) on the built models,
EfficientNet-B1..B7 = B0 scaled by the released table, and ONNX export of one model per family."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import fbnas
from fbnas.arch.scaling import scale_spec
from fbnas.arch.zoo import PUBLISHED, get_spec, zoo_names

FAMILIES = [n for n in zoo_names() if PUBLISHED[n].family != "fbnet"]
# the issue's table (params exact, MACs in millions: conv + linear, ESPNetV2 without the final FC)
TABLE = {"ghostnet_100": (5_182_508, 141.2), "ghostnetv2_100": (6_156_908, 167.0),
         "efficientnet_b0": (5_288_548, 385.8), "efficientnet_b1": (7_794_184, 686.8),
         "efficientnet_b4": (19_341_616, 4393.8), "efficientnetv2_s": (21_458_488, 8365.6),
         "espnetv2_s100": (1_670_072, 85.72)}


def test_the_families_are_in_the_zoo():
    expected = ({f"ghostnet_{w}" for w in ("050", "100", "130")} | {f"ghostnetv2_{w}" for w in ("100", "130", "160")}
                | {f"efficientnet_b{i}" for i in range(8)} | {"efficientnetv2_s", "espnet_c"}
                | {f"espnetv2_s{s}" for s in ("050", "100", "150", "200")})
    assert expected <= set(FAMILIES)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_issue_table(name):
    params, macs_m = TABLE[name]
    report = fbnas.profile(name)
    macs = report.macs - (report.head_macs if name.startswith("espnetv2") else 0)
    assert report.params_total == params
    assert abs(macs / (macs_m * 1e6) - 1) < 0.005


@pytest.mark.parametrize("name", [n for n in FAMILIES if PUBLISHED[n].params is not None])
def test_published_counts(name):
    pub = PUBLISHED[name]
    report = fbnas.profile(name, num_classes=pub.num_classes)
    assert report.params_total == pub.params  # every trainable parameter, as sum(numel) counts
    if pub.macs is not None:
        macs = report.macs - (0 if pub.macs_with_fc else report.head_macs)
        assert abs(macs / pub.macs - 1) < 0.005


@pytest.mark.parametrize("name", FAMILIES)
def test_analytic_counts_are_the_built_models(name):
    """Exact equality with FlopCounterMode at a reduced input (64 px; native-size counts are checked above)."""
    spec = get_spec(name)
    num_classes = PUBLISHED[name].num_classes
    model = fbnas.create_model(spec, num_classes=num_classes).eval()
    assert fbnas.profile(spec, num_classes=num_classes).params_total == sum(p.numel() for p in model.parameters())
    report = fbnas.profile(spec, input_size=64, num_classes=num_classes)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        y = model(torch.randn(1, 3, 64, 64))
    assert tuple(y.shape) == (1, num_classes)
    assert counter.get_total_flops() == 2 * report.macs


@pytest.mark.parametrize("name", ["ghostnetv2_100", "espnetv2_s050"])
def test_analytic_counts_at_native_size(name):
    spec = get_spec(name)
    model = fbnas.create_model(spec).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, spec.input_size, spec.input_size))
    assert counter.get_total_flops() == 2 * fbnas.profile(spec).macs


def test_efficientnet_b1_to_b7_are_b0_scaled_by_the_released_table():
    table = {"b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3),
             "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4), "b6": (1.8, 2.6, 528, 0.5),
             "b7": (2.0, 3.1, 600, 0.5)}
    b0 = get_spec("efficientnet_b0")
    for key, (w, d, r, drop) in table.items():
        scaled = scale_spec(b0, depth=d, width=w, input_size=r, dropout=drop, name=f"efficientnet_{key}")
        assert scaled.to_dict() == get_spec(f"efficientnet_{key}").to_dict(), key
    # B7's width is the table's 2.0, not the formula's 1.1^6 = 1.77 (stem 64 channels, head 2560)
    b7 = get_spec("efficientnet_b7").expand()
    assert (b7[0].out_channels, b7[-1].out_channels) == (64, 2560)


def test_zoo_defs_are_canonical():
    """The JSON files are what tools/make_family_defs.py writes (spec round trip, no stray fields)."""
    for name in FAMILIES:
        raw = json.loads(resources.files("fbnas.arch").joinpath("zoo_defs", f"{name}.json").read_text())
        assert get_spec(name).to_dict() == raw, name


@pytest.mark.parametrize("name", ["ghostnetv2_100", "efficientnetv2_s", "espnetv2_s050", "espnet_c"])
def test_one_model_per_family_exports_to_onnx(name):
    from fbnas.export import calibrate_untrained, export_model, load_source

    src = load_source(name, num_classes=PUBLISHED[name].num_classes)
    shape = (1, 3, 96, 96)
    calibrate_untrained(src.model, shape)
    r = export_model(src.model, None, "onnx", shape)
    assert r.max_abs_diff < 1e-3 and r.folded_pairs > 0
