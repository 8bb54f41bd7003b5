"""Channel rounding shared by specs, blocks and spaces (a leaf: it imports nothing of fbnas)."""

from __future__ import annotations

# Sane upper bounds of an architecture (the zoo's largest: 3840 hidden channels, 600 px, 15 repeats); a value
# above them is a typo or a fuzzed input, and would allocate gigabytes before failing
MAX_CHANNELS = 16384  # input, output and hidden channels of any block, and any integer op parameter
MAX_INPUT_SIZE = 4096  # input height / width in pixels
MAX_REPEATS = 256  # repeats of one block row
MAX_BLOCKS = 2048  # blocks of a whole network
MAX_KERNEL = 31  # kernel sizes (k, dw_k)
MAX_EXPANSION = 64.0  # expansion ratios (e)


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
