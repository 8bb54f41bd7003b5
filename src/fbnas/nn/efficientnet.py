"""EfficientNet V1/V2 ops: MBConv with the SE squeezed from the block's input, and Fused-MBConv.

EfficientNet (arXiv 1905.11946) builds on MnasNet's MBConv: 1x1 expand (+BN+SiLU), kxk depthwise (+BN+SiLU),
squeeze-and-excitation to ``int(c_in * se)`` channels (se = 0.25 of the block's *input*, not of the expanded
width), 1x1 projection (+BN), residual with drop-connect. EfficientNetV2 (arXiv 2104.00298, Fig. 2) fuses the
expansion and the depthwise conv into one kxk conv (Fused-MBConv); at e = 1 the block is a single kxk conv
(+BN+SiLU). Channel and SE rules follow torchvision's and timm's definitions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fbnas.channels import make_divisible
from fbnas.cost.formulas import ConvShape, conv_out_size
from fbnas.nn.family import ACT, EXPANSION, KERNEL, OpFamily, Param, register_alias, register_family
from fbnas.nn.layers import ConvBNAct, SqueezeExcite, drop_path, has_params


def _se_ratio(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def mb_channels(cin: int, p: dict[str, Any]) -> tuple[int, int]:
    """(expanded, SE) channels: make_divisible(c_in * e) with the 90% rule, SE max(1, int(c_in * se)) or 0."""
    mid = make_divisible(cin * p["e"], p["width_divisor"], round_limit=0.9)
    return mid, (max(1, int(cin * p["se"])) if p["se"] else 0)


def _se_shapes(mid: int, se_mid: int, ho: int, wo: int, act: str | None) -> list[ConvShape]:
    return [ConvShape.pool(mid, ho, wo, label="se.pool"),
            ConvShape(mid, se_mid, 1, 1, 1, 1, bias=True, prelu=has_params(act), label="se.reduce"),
            ConvShape(se_mid, mid, 1, 1, 1, 1, bias=True, label="se.expand")]


class MBConv(nn.Module):
    """[1x1 expand +BN+act] -> kxk depthwise +BN+act -> [SE from c_in] -> 1x1 project +BN -> [+ x]."""

    def __init__(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        super().__init__()
        mid, se_mid = mb_channels(cin, p)
        k, act = p["k"], p["act"]
        self.expand = ConvBNAct(cin, mid, 1, act=act) if mid != cin else None
        self.dw = ConvBNAct(mid, mid, k, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, se_mid, act=act, gate="sigmoid") if se_mid else None
        self.project = ConvBNAct(mid, cout, 1, act=None)
        self.residual = cin == cout and stride == 1
        self.drop_path_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + drop_path(y, self.drop_path_rate, self.training) if self.residual else y


class MBConvFamily(OpFamily):
    name = "mbconv"
    params = {"k": KERNEL, "e": EXPANSION, "se": Param(0.25, _se_ratio, "a number in [0, 1] (0: no SE)"),
              "act": ACT}

    def build(self, cin, cout, stride, p):
        return MBConv(cin, cout, stride, p)

    def shapes(self, cin, cout, stride, h, w, p):
        mid, se_mid = mb_channels(cin, p)
        k, prelu = p["k"], has_params(p["act"])
        out: list[ConvShape] = []
        if mid != cin:
            out.append(ConvShape(cin, mid, 1, 1, h, w, bn=True, prelu=prelu, label="expand"))
        ho, wo = conv_out_size(h, k, stride, k // 2), conv_out_size(w, k, stride, k // 2)
        out.append(ConvShape(mid, mid, k, mid, ho, wo, bn=True, prelu=prelu, label="dw"))
        if se_mid:
            out += _se_shapes(mid, se_mid, ho, wo, p["act"])
        out.append(ConvShape(mid, cout, 1, 1, ho, wo, bn=True, label="project"))
        return out, ho, wo


class FusedMBConv(nn.Module):
    """kxk expand (stride) +BN+act -> [SE from c_in] -> 1x1 project +BN; at e = 1 one kxk conv +BN+act; [+ x]."""

    def __init__(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        super().__init__()
        mid, se_mid = mb_channels(cin, p)
        k, act = p["k"], p["act"]
        self.fused = mid != cin
        self.conv = ConvBNAct(cin, mid if self.fused else cout, k, stride, act=act)
        self.se = SqueezeExcite(mid, se_mid, act=act, gate="sigmoid") if se_mid and self.fused else None
        self.project = ConvBNAct(mid, cout, 1, act=None) if self.fused else None
        self.residual = cin == cout and stride == 1
        self.drop_path_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.se is not None:
            y = self.se(y)
        if self.project is not None:
            y = self.project(y)
        return x + drop_path(y, self.drop_path_rate, self.training) if self.residual else y


class FusedMBConvFamily(OpFamily):
    name = "fused_mbconv"
    params = {"k": KERNEL, "e": EXPANSION, "se": Param(0.0, _se_ratio, "a number in [0, 1] (0: no SE)"),
              "act": ACT}

    def build(self, cin, cout, stride, p):
        return FusedMBConv(cin, cout, stride, p)

    def shapes(self, cin, cout, stride, h, w, p):
        mid, se_mid = mb_channels(cin, p)
        k, prelu = p["k"], has_params(p["act"])
        ho, wo = conv_out_size(h, k, stride, k // 2), conv_out_size(w, k, stride, k // 2)
        if mid == cin:
            return [ConvShape(cin, cout, k, 1, ho, wo, bn=True, prelu=prelu, label="conv")], ho, wo
        out = [ConvShape(cin, mid, k, 1, ho, wo, bn=True, prelu=prelu, label="conv")]
        if se_mid:
            out += _se_shapes(mid, se_mid, ho, wo, p["act"])
        out.append(ConvShape(mid, cout, 1, 1, ho, wo, bn=True, label="project"))
        return out, ho, wo


for _fam in (MBConvFamily(), FusedMBConvFamily()):
    register_family(_fam)


def _register_aliases() -> None:
    """EfficientNet's names: MBConv1/MBConv6 (paper Table 1), Fused-MBConv1/4 (EfficientNetV2 Table 4)."""
    for k in (3, 5):
        for e in (1, 4, 6):
            register_alias(f"mbconv{e}_k{k}", "mbconv", k=k, e=e, act="swish")
            register_alias(f"fused_mbconv{e}_k{k}", "fused_mbconv", k=k, e=e, act="swish")


_register_aliases()
