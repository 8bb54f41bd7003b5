"""Channel rounding shared by specs, blocks and spaces (a leaf: it imports nothing of fbnas)."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.95) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, one step up when that falls below ``round_limit``
    of it (mobile-vision: 95%; EfficientNet's round_filters, GhostNet and timm: 90%)."""
    if divisor <= 1:
        return max(1, int(round(value)))
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return int(rounded)
