"""Compound scaling of an arch spec (EfficientNet, arXiv 1905.11946, eq. 3).

depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi with alpha * beta^2 * gamma^2 ~ 2, so that the
MACs grow about (alpha * beta^2 * gamma^2)^phi ~ 2^phi.

- Depth: each stage's number of blocks n becomes ceil(n * d), as EfficientNet rounds each stage's repeats up.
  Extra blocks repeat the stage's last row (stride 1); fewer blocks drop the stage's last ones (never its first
  row, which carries the stride). Rows of stem/head families (a plain ``conv``, ``pool_conv``, ``ir_pool``)
  are neither counted nor repeated.
- Width: every row's channels (and an explicit ``mid``) times w, rounded to the spec's width divisor with the
  90% rule (EfficientNet's round_filters).
- Resolution: the input size times r, rounded to the nearest integer.

The released EfficientNet-B1..B7 use a table of (w, d, r) instead of the formula; :func:`scale_spec` takes either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fbnas.arch.spec import ArchSpec
from fbnas.channels import make_divisible
from fbnas.errors import SpecError

FIXED_DEPTH_FAMILIES = ("conv", "pool_conv", "ir_pool")


@dataclass(frozen=True)
class Coefficients:
    depth: float
    width: float
    resolution: float  # a multiplier of the input size


def compound(phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15) -> Coefficients:
    """EfficientNet eq. 3: d = alpha^phi, w = beta^phi, r = gamma^phi."""
    for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not v >= 1:
            raise SpecError(f"{name} must be >= 1 (EfficientNet eq. 3), got {v}")
    return Coefficients(alpha ** phi, beta ** phi, gamma ** phi)


def flops_factor(alpha: float, beta: float, gamma: float, phi: float) -> float:
    """The predicted MACs growth (alpha * beta^2 * gamma^2)^phi."""
    return (alpha * beta ** 2 * gamma ** 2) ** phi


def scale_spec(spec: ArchSpec, depth: float = 1.0, width: float = 1.0, resolution: float = 1.0,
               input_size: int | None = None, dropout: float | None = None, name: str | None = None) -> ArchSpec:
    """``spec`` with repeats x ``depth`` (ceil), channels x ``width`` (divisor, 90% rule) and input size
    x ``resolution`` (or exactly ``input_size``); ``dropout`` replaces the head's."""
    from fbnas.nn.ops import resolve_op

    if depth <= 0 or width <= 0 or resolution <= 0:
        raise SpecError(f"scaling factors must be > 0, got depth {depth}, width {width}, resolution {resolution}")
    data = spec.to_dict()
    divisor = spec.width_divisor

    def chans(c: int) -> int:
        return int(c) if width == 1.0 else make_divisible(c * width, divisor, round_limit=0.9)

    for si, stage in enumerate(data["stages"]):
        for row in stage:
            row[1] = chans(row[1])
            if len(row) > 4 and row[4].get("mid"):
                row[4]["mid"] = chans(row[4]["mid"])
        scalable = [row for row in stage if resolve_op(row[0], row[4] if len(row) > 4 else {},
                                                       spec.basic_args)[0].name not in FIXED_DEPTH_FAMILIES]
        if scalable and depth != 1.0:
            data["stages"][si] = _scale_stage_depth(stage, scalable, depth)
    data["input_size"] = int(input_size) if input_size is not None else int(round(spec.input_size * resolution))
    if dropout is not None:
        data["head"]["dropout"] = dropout
    data["name"] = name or spec.name
    return ArchSpec.from_dict(data, source=f"scaled {spec.name}")


def _scale_stage_depth(stage: list[list], scalable: list[list], depth: float) -> list[list]:
    """The stage with ceil(n * depth) scalable blocks: extra ones repeat its last scalable row, missing ones are
    taken from its last rows (the first row, with the stage's stride, always stays)."""
    n = sum(row[3] for row in scalable)
    target = max(1, int(math.ceil(n * depth - 1e-9)))
    if target > n:
        scalable[-1][3] += target - n
        return stage
    remove = n - target
    for row in reversed(scalable):
        keep = 1 if row is scalable[0] else 0
        take = min(remove, row[3] - keep)
        row[3] -= take
        remove -= take
    return [row for row in stage if row[3] > 0]
