"""Contract of every registered op (family or alias): its ``shapes()`` is the truth about the built module.

At several (in, out, stride, size) points: MACs of ``shapes()`` == ``FlopCounterMode / 2`` of the built module,
its params == ``sum(numel)`` (PReLU slopes included), the elements it declares entering global average pools
== those entering its ``AdaptiveAvgPool2d`` modules, and the output shape is the one declared. Blocks that read
the network's input image (``takes_image``) get one at twice the block's input size. A new op family needs
nothing but its ``shapes()`` to be covered here. The negative controls show each check can fail.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fbnas.cost.formulas import pooled, total
from fbnas.errors import SpecError
from fbnas.nn.blocks import IRFamily
from fbnas.nn.ops import aliases, family_names, get_family, resolve_op

POINTS = [(8, 8, 1, 8), (8, 16, 2, 9), (16, 24, 1, 7), (24, 16, 2, 6)]  # (cin, cout, stride, input size)
BASIC_ARGS = {"width_divisor": 8, "act": "relu"}
IMAGE_CHANNELS = 3


def contract_problems(family, params: dict, cin: int, cout: int, stride: int, size: int) -> list[str]:
    """What ``family.shapes`` gets wrong about ``family.build`` at this point (empty: nothing)."""
    module = family.build(cin, cout, stride, params).eval()
    shapes, ho, wo = family.shapes(cin, cout, stride, size, size, params)
    macs, _, params_total = total(shapes)
    x = torch.randn(2, cin, size, size)
    args = (x, torch.randn(2, IMAGE_CHANNELS, 2 * size, 2 * size)) if getattr(module, "takes_image", False) else (x,)
    seen: list[int] = []
    hooks = [m.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0][0].numel()))
             for m in module.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        y = module(*args)
    for h in hooks:
        h.remove()
    problems = []
    if pooled(shapes) != sum(seen):
        problems.append(f"pooled elements {pooled(shapes)} != {sum(seen)} entering AdaptiveAvgPool2d")
    if tuple(y.shape) != (2, cout, ho, wo):
        problems.append(f"output {tuple(y.shape[1:])} != declared {(cout, ho, wo)}")
    flops = counter.get_total_flops()
    if 2 * macs * 2 != flops:  # the batch of 2 doubles FlopCounterMode's count
        problems.append(f"MACs {macs} != FlopCounterMode/2 per image {flops / 4}")
    numel = sum(p.numel() for p in module.parameters())
    if params_total != numel:
        problems.append(f"params {params_total} != numel {numel}")
    return problems


def _checked_points(op: str, family=None, kwargs: dict | None = None,
                    points=None) -> list[tuple[tuple[int, int, int, int], list[str]]]:
    fam, params = resolve_op(op, {**_point_kwargs(op), **(kwargs or {})}, BASIC_ARGS)
    fam = family or fam
    out = []
    for point in points or POINTS:
        try:
            out.append((point, contract_problems(fam, params, *point)))
        except SpecError:
            continue  # not valid at this point (group divisibility, a stride-1-only op)
    return out


def _point_kwargs(op: str) -> dict:
    """Kwargs the contract needs for an op to be valid at its points (input reinforcement needs the image)."""
    family = aliases()[op][0]
    return {"reinf": IMAGE_CHANNELS} if family == "image_concat" else {}


# ops that are valid only where c_out = c_in + 3 (image_concat) or c_out > c_in with K | channels (ESPNetV2)
EXTRA_POINTS = [(8, 11, 1, 8), (16, 19, 1, 7), (8, 16, 2, 8), (16, 48, 2, 9), (16, 32, 2, 7), (8, 24, 2, 6),
                (16, 16, 1, 8), (32, 32, 1, 5)]


@pytest.mark.parametrize("op", sorted(aliases()))
def test_op_shapes_match_the_built_module(op):
    checked = _checked_points(op, points=POINTS + EXTRA_POINTS)
    assert checked, f"{op}: valid at none of the points {POINTS + EXTRA_POINTS}"
    for point, problems in checked:
        assert problems == [], (op, point)


@pytest.mark.parametrize("family", [f for f in family_names() if "act" in get_family(f).params])
@pytest.mark.parametrize("act", ["prelu", "swish"])
def test_family_shapes_hold_for_every_activation(family, act):
    """PReLU has one slope per channel: every family that takes an activation must declare them."""
    checked = _checked_points(family, kwargs={"act": act}, points=POINTS + EXTRA_POINTS)
    assert checked
    for point, problems in checked:
        assert problems == [], (family, act, point)


@pytest.mark.parametrize("op", ["eesp_down", "image_concat", "ghost_bneck_v2_k3_se", "mbconv6_k3", "ir_sa_k3_r2",
                                "sa_k5_r4"])
def test_reinforced_and_attention_ops_export_and_fold(op, tmp_path):
    """Input reinforcement, DFC's pooling/upsampling, SE and split attention's r-softmax export to ONNX with BN
    folded."""
    from fbnas.export import calibrate_untrained, export_model

    fam, params = resolve_op(op, {"reinf": IMAGE_CHANNELS} if "image" in op or "down" in op else {}, BASIC_ARGS)
    cin, cout, stride = (16, 19, 1) if op == "image_concat" else (16, 32, 2)

    class Net(nn.Module):  # a block fed by a conv, with the image where it takes one
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(IMAGE_CHANNELS, cin, 3, 2, 1), nn.BatchNorm2d(cin))
            self.block = fam.build(cin, cout, stride, params)

        def forward(self, x):
            y = self.stem(x)
            return self.block(y, x) if getattr(self.block, "takes_image", False) else self.block(y)

    net = Net().eval()
    shape = (1, IMAGE_CHANNELS, 32, 32)
    calibrate_untrained(net, shape)
    r = export_model(net, tmp_path / "op.onnx", "onnx", shape)
    assert r.folded_pairs >= (1 if op == "image_concat" else 2) and r.max_abs_diff < 1e-4


def test_every_family_is_reached():
    reached = {name for name, _ in aliases().values()}
    assert reached == set(family_names())
    assert get_family("ir") is resolve_op("ir_k3", {}, BASIC_ARGS)[0]


class _ForgetsExpansion(IRFamily):
    """Negative control: declares the block without its 1x1 expansion conv."""

    def shapes(self, cin, cout, stride, h, w, p):
        shapes, ho, wo = super().shapes(cin, cout, stride, h, w, p)
        return [s for s in shapes if s.label != "pw"], ho, wo


class _WrongStride(IRFamily):
    """Negative control: declares stride-1 output sizes for every stride."""

    def shapes(self, cin, cout, stride, h, w, p):
        shapes, _, _ = super().shapes(cin, cout, stride, h, w, p)
        return shapes, h, w


def test_negative_controls_fail():
    _, params = resolve_op("ir_k3", {"e": 6}, BASIC_ARGS)
    probs = contract_problems(_ForgetsExpansion(), params, 8, 16, 1, 8)
    assert any("MACs" in p for p in probs) and any("params" in p for p in probs)
    assert contract_problems(IRFamily(), params, 8, 16, 1, 8) == []
    probs = contract_problems(_WrongStride(), params, 8, 16, 2, 8)
    assert any("output" in p for p in probs)


# ---- negative controls of the seed 004 families: each declares a plausible mistake the contract must catch ----
def _dropping(family_cls, predicate):
    class Wrong(family_cls):
        def shapes(self, cin, cout, stride, h, w, p):
            shapes, ho, wo = super().shapes(cin, cout, stride, h, w, p)
            return [s for s in shapes if not predicate(s)], ho, wo
    return Wrong()


def _relabel(family_cls, change):
    class Wrong(family_cls):
        def shapes(self, cin, cout, stride, h, w, p):
            shapes, ho, wo = super().shapes(cin, cout, stride, h, w, p)
            return [change(s) for s in shapes], ho, wo
    return Wrong()


def _negative_controls():
    from dataclasses import replace

    from fbnas.nn.attention import IRSAFamily, SplitAttnFamily
    from fbnas.nn.efficientnet import FusedMBConvFamily, MBConvFamily
    from fbnas.nn.espnet import EESPDownFamily, EESPFamily, ESPFamily, ESPLevelFamily, ImageConcatFamily
    from fbnas.nn.ghost import GhostBottleneckFamily, GhostFamily, PoolConvFamily

    def se_from_expanded(s):  # SE squeezed from the expanded width instead of the block's input
        return replace(s, cout=s.cout * 6) if s.label == "se.reduce" else (
            replace(s, cin=s.cin * 6) if s.label == "se.expand" else s)

    return {
        "ghost: no cheap op": ("ghost", {}, (8, 16, 1, 8),
                               _dropping(GhostFamily, lambda s: s.label.endswith(".cheap"))),
        "ghost_v2: no DFC attention": ("ghost_v2", {}, (8, 16, 1, 8),
                                       _dropping(GhostFamily, lambda s: s.label.startswith("dfc."))),
        "ghost_v2: square DFC kernels": ("ghost_v2", {}, (8, 16, 1, 8),
                                         _relabel(GhostFamily, lambda s: replace(s, kernel_w=None))),
        "ghost_bneck: no shortcut convs": ("ghost_bneck_k3_se", {}, (8, 16, 2, 8),
                                           _dropping(GhostBottleneckFamily,
                                                     lambda s: s.label.startswith("shortcut"))),
        "mbconv: SE from the expanded width": ("mbconv6_k3", {}, (16, 24, 1, 7),
                                               _relabel(MBConvFamily, se_from_expanded)),
        "fused_mbconv: declared as a 1x1 expansion": ("fused_mbconv4_k3", {}, (16, 24, 2, 8),
                                                      _relabel(FusedMBConvFamily, lambda s: replace(s, kernel=1)
                                                               if s.label == "conv" else s)),
        "esp: PReLU slopes missing": ("esp", {}, (8, 8, 1, 8), _relabel(ESPFamily, lambda s: replace(s, prelu=False))),
        "esp: no HFF branches": ("esp", {}, (8, 16, 2, 8), _dropping(ESPFamily, lambda s: s.label == "esp.d16")),
        "eesp: ungrouped 1x1": ("eesp", {}, (16, 16, 1, 8),
                                _relabel(EESPFamily, lambda s: replace(s, groups=1) if s.label.endswith("proj")
                                         else s)),
        "eesp_down: no input reinforcement": ("eesp_down", {"reinf": IMAGE_CHANNELS}, (16, 32, 2, 7),
                                              _dropping(EESPDownFamily, lambda s: s.label.startswith("reinf"))),
        "image_concat: BN only": ("image_concat", {}, (16, 19, 1, 7),
                                  _relabel(ImageConcatFamily, lambda s: replace(s, prelu=False))),
        "esp_level: ESP modules missing": ("esp_level", {}, (8, 16, 2, 8),
                                           _dropping(ESPLevelFamily, lambda s: s.label.startswith("esp"))),
        "pool_conv: pool not declared": ("pool_conv", {}, (8, 16, 1, 8),
                                         _dropping(PoolConvFamily, lambda s: s.kind == "pool")),
        "ir_sa: one split declared": ("ir_sa_k3_r4", {}, (8, 16, 2, 8),
                                      _relabel(IRSAFamily, lambda s: replace(s, cout=s.cout // 4)
                                               if s.label in ("sa.conv", "sa.expand") else s)),
        "ir_sa: dense split conv": ("ir_sa_k5_r2", {}, (16, 24, 1, 7),
                                    _relabel(IRSAFamily, lambda s: replace(s, groups=1) if s.label == "sa.conv"
                                             else s)),
        "sa: attention bottleneck missing": ("sa_k3_r2", {}, (8, 16, 1, 8),
                                             _dropping(SplitAttnFamily, lambda s: s.label == "sa.reduce")),
    }


@pytest.mark.parametrize("case", sorted(_negative_controls()))
def test_negative_controls_of_the_new_families_fail(case):
    op, kwargs, point, wrong = _negative_controls()[case]
    fam, params = resolve_op(op, {**_point_kwargs(op), **kwargs}, BASIC_ARGS)
    assert contract_problems(fam, params, *point) == [], case  # the real family passes at this point
    assert contract_problems(wrong, params, *point) != [], case
