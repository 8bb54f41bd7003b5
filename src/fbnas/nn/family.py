"""What an op family is (its parameters, ``build`` and ``shapes``) and the registry tables families fill.

A family owns three things that must agree: its parameters (validated, with defaults), ``build`` (the
nn.Module) and ``shapes`` (its conv layers with output sizes, from which cost is counted analytically).
Family modules (``fbnas.nn.blocks``, ...) import this module and register; :mod:`fbnas.nn.ops` is the
registry's read side and loads every family module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from fbnas.cost.formulas import ConvShape
from fbnas.errors import SpecError


@dataclass(frozen=True)
class Param:
    default: Any
    check: Callable[[Any], bool]
    expect: str  # human description of valid values


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _odd_kernel(v: Any) -> bool:
    return _pos_int(v) and v % 2 == 1


def _pos_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _act(v: Any) -> bool:
    from fbnas.nn.layers import ACTIVATIONS

    return v in ACTIVATIONS


def _se(v: Any) -> bool:
    return v in (None, "sigmoid", "hsigmoid")


def _opt_nonneg_int(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def _rate(v: Any) -> bool:
    return isinstance(v, (int, float)) and 0 <= v < 1


KERNEL = Param(3, _odd_kernel, "an odd positive integer")
EXPANSION = Param(1.0, _pos_num, "a number > 0")
ACT = Param(None, _act, "one of relu, hswish, relu6, swish, prelu, identity")  # None: basic_args.act
SE = Param(None, _se, "null, 'sigmoid' or 'hsigmoid'")
GROUPS = Param(1, _pos_int, "a positive integer")
FLAG = Param(False, _is_bool, "true or false")
PADDING = Param(None, _opt_nonneg_int, "null or a non-negative integer")


class OpFamily:
    """Base class of a block family. Subclasses set ``name`` and ``params``."""

    name: str = ""
    params: dict[str, Param] = {}

    def resolve(self, kwargs: dict[str, Any], basic_args: dict[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - set(self.params)
        if unknown:
            key = sorted(unknown)[0]
            raise SpecError(f"unknown kwarg {key!r} for op family {self.name!r}; valid: {sorted(self.params)}")
        out: dict[str, Any] = {}
        for key, p in self.params.items():
            v = kwargs.get(key, p.default)
            if key == "act" and v is None:
                v = basic_args.get("act", "relu")
            if isinstance(v, list) and key == "dw_padding":  # mobile-vision writes [p, p]
                v = v[0] if v else None
            try:
                ok = bool(p.check(v))
            except (TypeError, ValueError):  # e.g. a list where a name is expected: not a valid value either
                ok = False
            if not ok:
                raise SpecError(f"field {key!r} must be {p.expect}, got {v!r}")
            check_bounds(key, v)
            out[key] = v
        out["width_divisor"] = int(basic_args.get("width_divisor", 8))
        return out

    def build(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def check_block(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        """Raise SpecError when these resolved parameters cannot compute at these channels / stride (called by
        spec validation for every block, so such a spec is refused before anything is built)."""

    def shapes(self, cin: int, cout: int, stride: int, h: int, w: int,
               p: dict[str, Any]) -> tuple[list[ConvShape], int, int]:
        """Conv layers of the block at input ``h x w`` and the output size."""
        raise NotImplementedError


def check_bounds(key: str, v: Any) -> None:
    """What every op parameter obeys beyond its own check: numbers finite, integers at most MAX_CHANNELS,
    kernels at most MAX_KERNEL, expansions at most MAX_EXPANSION (:mod:`fbnas.channels`)."""
    from fbnas.channels import MAX_CHANNELS, MAX_EXPANSION, MAX_KERNEL

    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    if isinstance(v, float) and not math.isfinite(v):
        raise SpecError(f"field {key!r} must be a finite number, got {v!r}")
    if key in ("k", "dw_k") and v > MAX_KERNEL:
        raise SpecError(f"field {key!r} must be at most {MAX_KERNEL}, got {v!r}")
    if key == "e" and v > MAX_EXPANSION:
        raise SpecError(f"field {key!r} must be at most {MAX_EXPANSION:g}, got {v!r}")
    if isinstance(v, int) and abs(v) > MAX_CHANNELS:
        raise SpecError(f"field {key!r} must be at most {MAX_CHANNELS}, got {v!r}")


FAMILIES: dict[str, OpFamily] = {}
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_family(family: OpFamily) -> OpFamily:
    FAMILIES[family.name] = family
    ALIASES.setdefault(family.name, (family.name, {}))
    return family


def register_alias(name: str, family: str, **preset: Any) -> None:
    ALIASES[name] = (family, preset)
