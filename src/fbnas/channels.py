"""Channel rounding shared by specs, blocks and spaces (a leaf: it imports nothing of fbnas)."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (mobile-vision rule: never below 95%)."""
    if divisor <= 1:
        return max(1, int(round(value)))
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.95 * value:
        rounded += divisor
    return int(rounded)
