"""Divergence guards shared by training (:func:`fbnas.train.fit.fit`) and the searches
(:func:`fbnas.search.alternating.run_alternating`).

A loop checks every loss it computes; at the first non-finite one it raises :class:`NonFinite`, which the
loop's owner turns into a one-line :class:`fbnas.errors.DivergenceError` naming the epoch, the value, the
likely cause and the kept checkpoint. Before a checkpoint is written, every logged metric and every tensor
of the state (weights, BN running statistics, architecture parameters, optimizer moments) is checked too, so a
checkpoint is never replaced by a non-finite one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from fbnas.errors import DivergenceError


class NonFinite(DivergenceError):
    """The first non-finite value a loop met: ``what`` (e.g. "the weight loss"), ``value``, and where. The loop's
    owner re-raises it with the epoch, the likely cause and the kept checkpoint; uncaught it is still one line."""

    def __init__(self, what: str, value: float, step: int | None = None, steps: int | None = None,
                 phase: str = "weights") -> None:
        super().__init__(f"{what} is {value}")
        self.what, self.value, self.step, self.steps, self.phase = what, value, step, steps, phase

    @property
    def where(self) -> str:
        if self.step is None:
            return ""
        of = f" of {self.steps}" if self.steps else ""
        return f"{'weight' if self.phase == 'weights' else self.phase} step {self.step + 1}{of}"


def check_loss(value: float, what: str, step: int, steps: int, phase: str = "weights") -> float:
    """``value`` when finite, else raise :class:`NonFinite` (called once per optimizer step)."""
    if not math.isfinite(value):
        raise NonFinite(what, value, step, steps, phase)
    return value


def nonfinite_metrics(record: Mapping[str, Any]) -> list[str]:
    """Keys of ``record`` whose value is a non-finite number (nested lists / mappings searched too)."""
    from fbnas.io import nonfinite_at

    return [k for k, v in record.items() if nonfinite_at(v) is not None]


def _tensors(obj: Any, prefix: str) -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def nonfinite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors anywhere in ``state`` (a state dict, an optimizer's, nested data)
    holding a NaN or an infinity."""
    bad = []
    for name, t in _tensors(state, prefix):
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            bad.append(name)
    return bad


def describe_names(names: list[str], limit: int = 3) -> str:
    """``a, b, c and 5 more``: a short list for a one-line message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def is_bn_statistic(name: str) -> bool:
    return name.endswith(("running_mean", "running_var"))
