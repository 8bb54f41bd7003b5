"""The one set of cost formulas: exact counts for plain numbers, differentiable ones for tensors.

Every op describes itself as a list of :class:`ConvShape` (its conv / linear layers with output sizes, plus the
few layers with parameters or pooled inputs but no multiply-adds); MACs and params are sums of the formulas
below. Channels may be floats or tensors (FBNetV2's effective channels), so the same code gives the exact count
and the differentiable estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Number = Any  # int, float or torch.Tensor

KINDS = ("conv", "norm", "pool")


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass
class ConvShape:
    """One layer of a block, as cost counting sees it.

    ``kind="conv"`` (default): a conv, or a linear layer as a 1x1 conv on a 1x1 map, plus the BN (``bn``) and
    per-channel PReLU (``prelu``) that follow it. ``kernel_w`` is set for non-square kernels (GhostNetV2's 1x5
    and 5x1 depthwise convs); ``dilation`` is recorded for descriptions only (it changes neither MACs nor
    params). ``kind="norm"``: a BN and/or PReLU over ``cout`` channels without a conv (ESPNet's BR after a
    concatenation). ``kind="pool"``: a global average pool over ``cin`` x ``h_out`` x ``w_out`` inputs; it has
    no MACs or params, its input elements are what mobile-vision's published MACs add (:func:`pooled`).
    """

    cin: Number
    cout: Number
    kernel: int
    groups: Number
    h_out: Number
    w_out: Number
    bias: bool = False
    bn: bool = False
    label: str = ""
    kernel_w: int | None = None
    dilation: int = 1
    prelu: bool = False
    kind: str = "conv"

    @classmethod
    def norm(cls, channels: Number, h: Number, w: Number, bn: bool = True, prelu: bool = False,
             label: str = "") -> ConvShape:
        return cls(channels, channels, 0, 1, h, w, bn=bn, prelu=prelu, label=label, kind="norm")

    @classmethod
    def pool(cls, channels: Number, h_in: Number, w_in: Number, label: str = "pool") -> ConvShape:
        return cls(channels, channels, 0, 1, h_in, w_in, label=label, kind="pool")

    @property
    def macs(self) -> Number:
        if self.kind != "conv":
            return 0
        return conv_macs(self.cin, self.cout, self.kernel, self.groups, self.h_out, self.w_out, self.kernel_w)

    @property
    def params(self) -> Number:
        """Weights only: the convention of the FBNet papers and mobile-vision's model_info."""
        if self.kind != "conv":
            return 0
        return conv_params(self.cin, self.cout, self.kernel, self.groups, kw=self.kernel_w)

    @property
    def params_total(self) -> Number:
        """Every trainable tensor: weights, conv bias, the BN affine pair and PReLU slopes (what torch counts)."""
        if self.kind == "pool":
            return 0
        extra = ((2 if self.bn else 0) + (1 if self.prelu else 0)) * self.cout
        if self.kind == "norm":
            return extra
        return conv_params(self.cin, self.cout, self.kernel, self.groups, self.bias, self.bn,
                           kw=self.kernel_w) + (self.cout if self.prelu else 0)

    @property
    def pooled(self) -> Number:
        """Elements entering a global average pool (0 for other layers)."""
        return self.cin * self.h_out * self.w_out if self.kind == "pool" else 0


def conv_macs(cin: Number, cout: Number, k: int, groups: Number, h: Number, w: Number,
              kw: int | None = None) -> Number:
    """k_h * k_w * h * w * C_in * C_out / groups (FBNetV2 eq. 9; k_w = k_h for square kernels)."""
    kk = k * (k if kw is None else kw)
    return kk * h * w * cin * cout / groups if not _is_int(cin, cout, groups) else \
        kk * h * w * (cin // groups) * cout


def conv_params(cin: Number, cout: Number, k: int, groups: Number, bias: bool = False, bn: bool = False,
                kw: int | None = None) -> Number:
    """k_h * k_w * C_in * C_out / groups, plus bias and the two BN affine vectors (FBNetV2 eq. 10)."""
    kk = k * (k if kw is None else kw)
    w = kk * cin * cout / groups if not _is_int(cin, cout, groups) else kk * (cin // groups) * cout
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


def pooled(shapes: list[ConvShape]) -> Number:
    """Elements entering the global average pools of a list of layers."""
    return sum(s.pooled for s in shapes)
