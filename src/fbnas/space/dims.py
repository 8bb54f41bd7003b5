"""Named, typed search dimensions: a categorical :class:`Choice` and a numeric :class:`Range`.

A dimension maps a coordinate ``u`` of the unit cube to a value (:meth:`from_unit`), so random and
quasi-Monte-Carlo sampling are one function of the space, and encodes a value for predictors
(:meth:`encode`: one-hot for a choice, the position in ``[0, 1]`` for a range, on a log scale where the
range is; a range with ``encode_per`` once per option of a choice). A sample of a space is a plain JSON dict
``{dimension name: value}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fbnas.errors import SpecError

Value = Any  # str | int | float | bool | None: JSON scalars


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (JSON scalars); ``group`` names the layer whose variables this one belongs to."""

    name: str
    values: tuple[Value, ...]
    labels: tuple[str, ...] = ()
    group: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            raise SpecError(f"dimension {self.name!r}: a choice needs at least one value")
        if len(set(map(_key, self.values))) != len(self.values):
            raise SpecError(f"dimension {self.name!r}: values must be distinct, got {list(self.values)}")
        if not self.labels:
            object.__setattr__(self, "labels", tuple(str(v) for v in self.values))
        if not self.group:
            object.__setattr__(self, "group", self.name)

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def encoding_size(self) -> int:
        return len(self.values)

    def index(self, value: Value) -> int:
        for i, v in enumerate(self.values):
            if _key(v) == _key(value):
                return i
        raise SpecError(f"dimension {self.name!r}: {value!r} is not one of {list(self.values)}")

    def from_unit(self, u: float) -> Value:
        return self.values[min(len(self.values) - 1, max(0, int(math.floor(u * len(self.values)))))]

    def to_unit(self, value: Value) -> float:
        """The centre of the value's cell (``from_unit(to_unit(v)) == v``)."""
        return (self.index(value) + 0.5) / len(self.values)

    def encode(self, value: Value) -> list[float]:
        out = [0.0] * len(self.values)
        out[self.index(value)] = 1.0
        return out

    def validate(self, value: Value) -> Value:
        return self.values[self.index(value)]


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``; ``log`` samples and encodes on a log scale, ``integer`` rounds down.

    ``encode_per`` names a choice of the same space whose options change what this number means (a learning
    rate for SGD is not one for RMSProp): the space then encodes it once per option, in the chosen option's
    slot, so that a predictor reads the interaction linearly. Sampling is unchanged."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False
    group: str = field(default="")
    encode_per: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise SpecError(f"dimension {self.name!r}: needs finite low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise SpecError(f"dimension {self.name!r}: a log-scale range needs low > 0, got {self.low}")
        if not self.group:
            object.__setattr__(self, "group", self.name)

    @property
    def encoding_size(self) -> int:
        return 1

    def _span(self) -> tuple[float, float]:
        return (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)

    def from_unit(self, u: float) -> float | int:
        u = min(1.0, max(0.0, float(u)))
        if self.integer:
            lo, hi = int(math.ceil(self.low)), int(math.floor(self.high))
            return min(hi, lo + int(math.floor(u * (hi - lo + 1))))
        a, b = self._span()
        v = a + u * (b - a)
        return min(self.high, max(self.low, math.exp(v) if self.log else v))

    def to_unit(self, value: float) -> float:
        v = self.validate(value)
        if self.integer:
            lo, hi = int(math.ceil(self.low)), int(math.floor(self.high))
            return (v - lo + 0.5) / (hi - lo + 1)
        a, b = self._span()
        x = math.log(v) if self.log else v
        return 0.0 if b == a else (x - a) / (b - a)

    def encode(self, value: float) -> list[float]:
        return [self.to_unit(value)]

    def validate(self, value: Any) -> float | int:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (self.integer and not float(value).is_integer()):
            kind = "an integer" if self.integer else "a finite number"
            raise SpecError(f"dimension {self.name!r}: must be {kind}, got {value!r}")
        if not self.low <= value <= self.high:
            raise SpecError(f"dimension {self.name!r}: must be in [{self.low:g}, {self.high:g}], got {value!r}")
        return int(value) if self.integer else float(value)


Dim = Choice | Range


def _key(v: Value) -> tuple[str, Value]:
    """Distinguish True from 1 and 1 from 1.0 when comparing choice values."""
    return type(v).__name__, v
