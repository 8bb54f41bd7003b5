"""Split attention (ResNeSt; FP-NAS's F++ space, seed 002 section 4 and Fig. 2): the ``sa`` conv op and ``ir_sa``,
the inverted residual with split attention in the place of SE.

A split-attention conv computes ``radix`` feature-map splits with one grouped kxk conv to ``out * radix``
channels (``groups = cardinality * radix``), BN and activation; it sums the splits, pools the sum globally,
runs a two-layer bottleneck (1x1 reduce with bias, activation, 1x1 expand to ``out * radix`` with bias) and
normalises the attention over the splits of every channel with an r-softmax; the output is the attention-weighted
sum of the splits. With ``radix = 1`` there is one split, and the r-softmax becomes a sigmoid gate: that is SE
(:class:`SplitAttention` with radix 1 holds :class:`fbnas.nn.layers.SqueezeExcite`'s tensors under the same names
and computes the same function).

Splits are laid out channel-major: output channel ``c * radix + r`` is split ``r`` of channel ``c``. In ``ir_sa`` the
conv is depthwise with ``radix`` filters per hidden channel (ResNeSt's grouped conv with ``cardinality = mid /
radix``), so every split is a full depthwise conv of the hidden channels and a narrower block is the leading slice
of a wider one (the single-path supernet's weight sharing, :mod:`fbnas.search.single_path`). It runs as a plain
depthwise conv of the input repeated ``radix`` times per channel (the same function and count, about 3x faster
on CPU than a grouped conv with a channel multiplier). The attention bottleneck is ``make_divisible(mid / 4)`` wide,
SE's width, and its 1x1 layers are dense (ResNeSt groups them by cardinality).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fbnas.channels import make_divisible
from fbnas.cost.formulas import ConvShape, conv_out_size
from fbnas.nn.blocks import _check_groups
from fbnas.nn.family import ACT, EXPANSION, FLAG, KERNEL, OpFamily, Param, register_alias, register_family
from fbnas.nn.layers import GATES, ConvBNAct, drop_path, has_params, make_act


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


RADIX = Param(2, _pos_int, "a positive integer")
CARDINALITY = Param(1, _pos_int, "a positive integer")
GATE = Param("sigmoid", lambda v: v in GATES, "'sigmoid' or 'hsigmoid'")
ATTN_RATIO = 0.25  # bottleneck width / attended channels, as SE


class SplitAttention(nn.Module):
    """Attention over ``radix`` splits of ``channels`` channels: input ``[B, channels * radix, H, W]`` (channel-major
    splits), output ``[B, channels, H, W]``; ``radix = 1`` is an SE gate (same tensor names as SqueezeExcite)."""

    def __init__(self, channels: int, radix: int, hidden: int, act: str = "relu", gate: str = "sigmoid") -> None:
        super().__init__()
        self.channels, self.radix = channels, radix
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = make_act(act, hidden)
        self.expand = nn.Conv2d(hidden, channels * radix, 1, bias=True)
        self.gate = GATES[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.radix == 1:
            return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        splits = x.reshape(b, self.channels, self.radix, h, w)
        a = self.expand(self.act(self.reduce(self.pool(splits.sum(2)))))
        a = torch.softmax(a.reshape(b, self.channels, self.radix), dim=-1)  # r-softmax across the splits
        return (splits * a.reshape(b, self.channels, self.radix, 1, 1)).sum(2)


class SplitAttnConv(nn.Module):
    """kxk conv to ``cout * radix`` channels in ``groups`` groups, BN, activation, then :class:`SplitAttention`."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, radix: int, groups: int, hidden: int, act: str,
                 gate: str) -> None:
        super().__init__()
        self.conv = ConvBNAct(cin, cout * radix, k, stride, groups=groups, act=act)
        self.attn = SplitAttention(cout, radix, hidden, act, gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.conv(x))


def split_attn_shapes(cin: int, cout: int, k: int, stride: int, radix: int, groups: int, hidden: int, act: str,
                      h: int, w: int, label: str) -> tuple[list[ConvShape], int, int]:
    """The conv (with BN), the pool of the split sum and the two 1x1 attention layers."""
    ho, wo = conv_out_size(h, k, stride, k // 2), conv_out_size(w, k, stride, k // 2)
    prelu = has_params(act)
    return [ConvShape(cin, cout * radix, k, groups, ho, wo, bn=True, prelu=prelu, label=f"{label}.conv"),
            ConvShape.pool(cout, ho, wo, label=f"{label}.pool"),
            ConvShape(cout, hidden, 1, 1, 1, 1, bias=True, prelu=prelu, label=f"{label}.reduce"),
            ConvShape(hidden, cout * radix, 1, 1, 1, 1, bias=True, label=f"{label}.expand")], ho, wo


class SplitAttnFamily(OpFamily):
    """ResNeSt's split-attention conv as an op: ``groups = cardinality * radix``; attention ``cout / 4`` wide."""

    name = "sa"
    params = {"k": KERNEL, "radix": RADIX, "cardinality": CARDINALITY, "act": ACT, "gate": GATE}

    def _check(self, cin: int, cout: int, p: dict[str, Any]) -> tuple[int, int]:
        groups = p["cardinality"] * p["radix"]
        _check_groups("cardinality", groups, cin, "input")
        _check_groups("cardinality", groups, cout * p["radix"], "output")
        return groups, make_divisible(cout * ATTN_RATIO, p["width_divisor"])

    def build(self, cin, cout, stride, p):
        groups, hidden = self._check(cin, cout, p)
        return SplitAttnConv(cin, cout, p["k"], stride, p["radix"], groups, hidden, p["act"], p["gate"])

    def shapes(self, cin, cout, stride, h, w, p):
        groups, hidden = self._check(cin, cout, p)
        return split_attn_shapes(cin, cout, p["k"], stride, p["radix"], groups, hidden, p["act"], h, w, "sa")


def ir_sa_channels(cin: int, p: dict[str, Any]) -> tuple[int, int]:
    """(mid, attention width) of an ``ir_sa`` block: mobile-vision rounding, SE's bottleneck width."""
    wd = p["width_divisor"]
    mid = make_divisible(cin * p["e"], wd)
    return mid, make_divisible(mid * ATTN_RATIO, wd)


def repeat_channels(x: torch.Tensor, times: int) -> torch.Tensor:
    """Every channel ``times`` times in a row: channel ``c * times + r`` is input channel ``c``."""
    if times == 1:
        return x
    b, c, h, w = x.shape
    return x.unsqueeze(2).expand(b, c, times, h, w).reshape(b, c * times, h, w)


class IRSABlock(nn.Module):
    """Inverted residual with split attention: [1x1 expand + act] -> depthwise split-attention conv (``radix``
    filters per hidden channel, stride) -> 1x1 linear -> + input when shapes agree. ``radix = 1`` is ``ir`` with
    SE (``dw`` is ``sa.conv``, ``se`` is ``sa.attn``)."""

    def __init__(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        super().__init__()
        mid, hidden = ir_sa_channels(cin, p)
        self.pw = ConvBNAct(cin, mid, 1, act=p["act"]) if (mid != cin or p["always_pw"]) else None
        self.radix = p["radix"]
        self.sa = SplitAttnConv(mid * self.radix, mid, p["k"], stride, self.radix, mid * self.radix, hidden, p["act"],
                                p["gate"])
        self.residual = cin == cout and stride == 1
        self.pwl = ConvBNAct(mid, cout, 1, act=None)
        self.drop_path_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.sa(repeat_channels(x if self.pw is None else self.pw(x), self.radix)))
        if self.residual:
            y = x + drop_path(y, self.drop_path_rate, self.training)
        return y


class IRSAFamily(OpFamily):
    name = "ir_sa"
    params = {"k": KERNEL, "e": EXPANSION, "radix": RADIX, "act": ACT, "gate": GATE, "always_pw": FLAG}

    def build(self, cin, cout, stride, p):
        return IRSABlock(cin, cout, stride, p)

    def shapes(self, cin, cout, stride, h, w, p):
        mid, hidden = ir_sa_channels(cin, p)
        out: list[ConvShape] = []
        if mid != cin or p["always_pw"]:
            out.append(ConvShape(cin, mid, 1, 1, h, w, bn=True, label="pw", prelu=has_params(p["act"])))
        r = p["radix"]
        sa, ho, wo = split_attn_shapes(mid * r, mid, p["k"], stride, r, mid * r, hidden, p["act"], h, w, "sa")
        out += sa
        out.append(ConvShape(mid, cout, 1, 1, ho, wo, bn=True, label="pwl"))
        return out, ho, wo


for _fam in (SplitAttnFamily(), IRSAFamily()):
    register_family(_fam)


def _register_aliases() -> None:
    for k in (3, 5):
        for r in (2, 4):
            register_alias(f"sa_k{k}_r{r}", "sa", k=k, radix=r)
            register_alias(f"ir_sa_k{k}_r{r}", "ir_sa", k=k, radix=r)
            register_alias(f"ir_sa_k{k}_r{r}_hs", "ir_sa", k=k, radix=r, act="hswish")


_register_aliases()
