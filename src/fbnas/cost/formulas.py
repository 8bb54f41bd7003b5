"""The one set of cost formulas: exact counts for plain numbers, differentiable ones for tensors.

Every op describes itself as a list of :class:`ConvShape` (its conv / linear layers with output sizes);
MACs and params are sums of the formulas below. Channels may be floats or tensors (FBNetV2's
effective channels), so the same code gives the exact count and the differentiable estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Number = Any  # int, float or torch.Tensor


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@dataclass
class ConvShape:
    """One conv (or linear, as a 1x1 conv on a 1x1 map) layer, plus the BN that follows it."""

    cin: Number
    cout: Number
    kernel: int
    groups: Number
    h_out: Number
    w_out: Number
    bias: bool = False
    bn: bool = False
    label: str = ""

    @property
    def macs(self) -> Number:
        return conv_macs(self.cin, self.cout, self.kernel, self.groups, self.h_out, self.w_out)

    @property
    def params(self) -> Number:
        """Weights only: the convention of the FBNet papers and mobile-vision's model_info."""
        return conv_params(self.cin, self.cout, self.kernel, self.groups)

    @property
    def params_total(self) -> Number:
        """Every trainable tensor: weights, conv bias and the BN affine pair (what torch counts)."""
        return conv_params(self.cin, self.cout, self.kernel, self.groups, self.bias, self.bn)


def conv_macs(cin: Number, cout: Number, k: int, groups: Number, h: Number, w: Number) -> Number:
    """k^2 * h * w * C_in * C_out / groups (FBNetV2 eq. 9)."""
    return k * k * h * w * cin * cout / groups if not _is_int(cin, cout, groups) else \
        k * k * h * w * (cin // groups) * cout


def conv_params(cin: Number, cout: Number, k: int, groups: Number, bias: bool = False, bn: bool = False) -> Number:
    """k^2 * C_in * C_out / groups, plus bias and the two BN affine vectors (FBNetV2 eq. 10)."""
    w = k * k * cin * cout / groups if not _is_int(cin, cout, groups) else k * k * (cin // groups) * cout
    extra = (1 if bias else 0) + (2 if bn else 0)
    return w + extra * cout


def _is_int(*xs: Number) -> bool:
    return all(isinstance(x, int) for x in xs)


def total(shapes: list[ConvShape]) -> tuple[Number, Number, Number]:
    """(MACs, weight params, all params) of a list of layers."""
    macs: Number = 0
    params: Number = 0
    params_total: Number = 0
    for s in shapes:
        macs = macs + s.macs
        params = params + s.params
        params_total = params_total + s.params_total
    return macs, params, params_total
