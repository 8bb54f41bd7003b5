"""Contract of every registered op (family or alias): its ``shapes()`` is the truth about the built module.

At several (in, out, stride, size) points: MACs of ``shapes()`` == ``FlopCounterMode / 2`` of the built module,
its params == ``sum(numel)``, and the output shape is the one declared. A new op family needs nothing but its
``shapes()`` to be covered here. The negative controls show each check can fail.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fbnas.cost.formulas import total
from fbnas.errors import SpecError
from fbnas.nn.blocks import IRFamily
from fbnas.nn.ops import aliases, family_names, get_family, resolve_op

POINTS = [(8, 8, 1, 8), (8, 16, 2, 9), (16, 24, 1, 7), (24, 16, 2, 6)]  # (cin, cout, stride, input size)
BASIC_ARGS = {"width_divisor": 8, "act": "relu"}


def contract_problems(family, params: dict, cin: int, cout: int, stride: int, size: int) -> list[str]:
    """What ``family.shapes`` gets wrong about ``family.build`` at this point (empty: nothing)."""
    module = family.build(cin, cout, stride, params).eval()
    shapes, ho, wo = family.shapes(cin, cout, stride, size, size, params)
    macs, _, params_total = total(shapes)
    x = torch.randn(2, cin, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        y = module(x)
    problems = []
    if tuple(y.shape) != (2, cout, ho, wo):
        problems.append(f"output {tuple(y.shape[1:])} != declared {(cout, ho, wo)}")
    flops = counter.get_total_flops()
    if 2 * macs * 2 != flops:  # the batch of 2 doubles FlopCounterMode's count
        problems.append(f"MACs {macs} != FlopCounterMode/2 per image {flops / 4}")
    numel = sum(p.numel() for p in module.parameters())
    if params_total != numel:
        problems.append(f"params {params_total} != numel {numel}")
    return problems


def _checked_points(op: str, family=None) -> list[tuple[tuple[int, int, int, int], list[str]]]:
    fam, params = resolve_op(op, {}, BASIC_ARGS)
    fam = family or fam
    out = []
    for point in POINTS:
        try:
            out.append((point, contract_problems(fam, params, *point)))
        except SpecError:
            continue  # not valid at this point (group divisibility, a stride-1-only op)
    return out


@pytest.mark.parametrize("op", sorted(aliases()))
def test_op_shapes_match_the_built_module(op):
    checked = _checked_points(op)
    assert checked, f"{op}: valid at none of the points {POINTS}"
    for point, problems in checked:
        assert problems == [], (op, point)


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
