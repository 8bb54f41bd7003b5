"""Built-in block families: conv, skip, inverted residual (IRF) and the ir_pool head; their aliases."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fbnas.channels import make_divisible
from fbnas.cost.formulas import ConvShape, conv_out_size
from fbnas.errors import SpecError
from fbnas.nn.family import (
    ACT,
    EXPANSION,
    FLAG,
    GROUPS,
    KERNEL,
    PADDING,
    SE,
    OpFamily,
    register_alias,
    register_family,
)
from fbnas.nn.layers import ChannelShuffle, ConvBNAct, SqueezeExcite, drop_path, has_params


def _check_groups(name: str, groups: int, channels: int, what: str) -> None:
    if channels % groups:
        raise SpecError(f"field {name!r}={groups} does not divide the {what} channels ({channels})")


# ---------------------------------------------------------------------------------------------------
class ConvFamily(OpFamily):
    """Plain kxk conv + BN + act (stems, the FBNetV1 conv_k1 head)."""

    name = "conv"
    params = {"k": KERNEL, "act": ACT, "bias": FLAG, "groups": GROUPS, "e": EXPANSION}

    def build(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> nn.Module:
        _check_groups("groups", p["groups"], cin, "input")
        _check_groups("groups", p["groups"], cout, "output")
        return ConvBNAct(cin, cout, p["k"], stride, groups=p["groups"], bias=p["bias"], act=p["act"])

    def shapes(self, cin, cout, stride, h, w, p):
        k = p["k"]
        ho, wo = conv_out_size(h, k, stride, k // 2), conv_out_size(w, k, stride, k // 2)
        return [ConvShape(cin, cout, k, p["groups"], ho, wo, bias=p["bias"], bn=True, label="conv",
                          prelu=has_params(p["act"]))], ho, wo


class SkipBlock(nn.Module):
    """Identity, or 1x1 conv + BN + ReLU when the shape changes (FBNetV1 'skip')."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.proj = None if (cin == cout and stride == 1) else ConvBNAct(cin, cout, 1, stride, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)


class SkipFamily(OpFamily):
    name = "skip"
    params = {"e": EXPANSION, "bias": FLAG, "less_se_channels": FLAG, "zero_last_bn_gamma": FLAG, "act": ACT}

    def build(self, cin, cout, stride, p):
        return SkipBlock(cin, cout, stride)

    def shapes(self, cin, cout, stride, h, w, p):
        if cin == cout and stride == 1:
            return [], h, w
        ho, wo = conv_out_size(h, 1, stride, 0), conv_out_size(w, 1, stride, 0)
        return [ConvShape(cin, cout, 1, 1, ho, wo, bn=True, label="proj")], ho, wo


# ---------------------------------------------------------------------------------------------------
def ir_channels(cin: int, p: dict[str, Any]) -> tuple[int, int]:
    """(mid, se_mid) channels of an inverted-residual block, with mobile-vision rounding."""
    wd = p["width_divisor"]
    mid = make_divisible(cin * p["e"], wd)
    se_mid = 0
    if p["se"]:
        se_mid = make_divisible(mid * 0.25 / p["e"] if p["less_se_channels"] else mid * 0.25, wd)
    return mid, se_mid


class IRFBlock(nn.Module):
    """Inverted residual: [1x1 group conv +act], [shuffle] -> kxk depthwise +act -> [SE] -> 1x1 linear.

    As mobile-vision's IRFBlock: ``pw_groups > 1`` shuffles channels even when there is no expansion conv
    (fbnet_a's e = 1 ``_g2`` blocks), and ``zero_last_bn_gamma`` zeroes the last BN only where the residual is
    added (elsewhere it would zero the block's whole output).
    """

    def __init__(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        super().__init__()
        mid, se_mid = ir_channels(cin, p)
        k, act, bias = p["k"], p["act"], p["bias"]
        self.pw = None
        _check_groups("pw_groups", p["pw_groups"], mid, "expanded")
        if mid != cin or p["always_pw"]:
            _check_groups("pw_groups", p["pw_groups"], cin, "input")
            self.pw = ConvBNAct(cin, mid, 1, groups=p["pw_groups"], bias=bias, act=act)
        self.shuffle = ChannelShuffle(p["pw_groups"]) if p["pw_groups"] > 1 else None
        pad = k // 2 if p["dw_padding"] is None else p["dw_padding"]
        self.dw = ConvBNAct(mid, mid, k, stride, padding=pad, groups=mid, bias=bias, act=act)
        self.se = SqueezeExcite(mid, se_mid, act=act, gate=p["se"]) if p["se"] else None
        _check_groups("pwl_groups", p["pwl_groups"], mid, "expanded")
        _check_groups("pwl_groups", p["pwl_groups"], cout, "output")
        self.residual = cin == cout and stride == 1
        self.pwl = ConvBNAct(mid, cout, 1, groups=p["pwl_groups"], bias=bias, act=None,
                             zero_gamma=p["zero_last_bn_gamma"] and self.residual)
        self.drop_path_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.pw is not None:
            y = self.pw(y)
        if self.shuffle is not None:
            y = self.shuffle(y)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.pwl(y)
        if self.residual:
            y = x + drop_path(y, self.drop_path_rate, self.training)
        return y


class IRFamily(OpFamily):
    name = "ir"
    params = {
        "k": KERNEL, "e": EXPANSION, "se": SE, "act": ACT, "bias": FLAG,
        "pw_groups": GROUPS, "pwl_groups": GROUPS, "less_se_channels": FLAG,
        "zero_last_bn_gamma": FLAG, "dw_padding": PADDING, "always_pw": FLAG,
    }

    def build(self, cin, cout, stride, p):
        return IRFBlock(cin, cout, stride, p)

    def check_block(self, cin, cout, stride, p):
        mid, _ = ir_channels(cin, p)
        _check_groups("pw_groups", p["pw_groups"], mid, "expanded")
        if mid != cin or p["always_pw"]:
            _check_groups("pw_groups", p["pw_groups"], cin, "input")
        _check_groups("pwl_groups", p["pwl_groups"], mid, "expanded")
        _check_groups("pwl_groups", p["pwl_groups"], cout, "output")
        pad = p["dw_padding"]
        if pad is not None and cin == cout and stride == 1 and pad != p["k"] // 2:
            raise SpecError(f"field 'dw_padding' {pad} would change the feature size of this stride-1 residual "
                            f"block (k {p['k']} keeps it with {p['k'] // 2})")

    def shapes(self, cin, cout, stride, h, w, p):
        mid, se_mid = ir_channels(cin, p)
        k, bias, prelu = p["k"], p["bias"], has_params(p["act"])
        out: list[ConvShape] = []
        if mid != cin or p["always_pw"]:
            out.append(ConvShape(cin, mid, 1, p["pw_groups"], h, w, bias=bias, bn=True, label="pw", prelu=prelu))
        pad = k // 2 if p["dw_padding"] is None else p["dw_padding"]
        ho, wo = conv_out_size(h, k, stride, pad), conv_out_size(w, k, stride, pad)
        out.append(ConvShape(mid, mid, k, mid, ho, wo, bias=bias, bn=True, label="dw", prelu=prelu))
        if p["se"]:
            out.append(ConvShape.pool(mid, ho, wo, label="se.pool"))
            out.append(ConvShape(mid, se_mid, 1, 1, 1, 1, bias=True, label="se.reduce", prelu=prelu))
            out.append(ConvShape(se_mid, mid, 1, 1, 1, 1, bias=True, label="se.expand"))
        out.append(ConvShape(mid, cout, 1, p["pwl_groups"], ho, wo, bias=bias, bn=True, label="pwl"))
        return out, ho, wo


# ---------------------------------------------------------------------------------------------------
class IRPoolBlock(nn.Module):
    """FBNetV2/V3 head: 1x1 expand (+BN+act), global pool, 1x1 conv to c_out (+act, no BN)."""

    def __init__(self, cin: int, cout: int, p: dict[str, Any]) -> None:
        super().__init__()
        mid = make_divisible(cin * p["e"], p["width_divisor"])
        self.pw = ConvBNAct(cin, mid, 1, act=p["act"])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pwl = ConvBNAct(mid, cout, 1, bias=False, bn=False, act=p["act"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwl(self.pool(self.pw(x)))


class IRPoolFamily(OpFamily):
    name = "ir_pool"
    params = {"e": EXPANSION, "act": ACT}

    def build(self, cin, cout, stride, p):
        if stride != 1:
            raise SpecError("ir_pool must have stride 1")
        return IRPoolBlock(cin, cout, p)

    def shapes(self, cin, cout, stride, h, w, p):
        mid = make_divisible(cin * p["e"], p["width_divisor"])
        prelu = has_params(p["act"])
        return [ConvShape(cin, mid, 1, 1, h, w, bn=True, label="pw", prelu=prelu),
                ConvShape.pool(mid, h, w),
                ConvShape(mid, cout, 1, 1, 1, 1, label="pwl", prelu=prelu)], 1, 1


for _fam in (ConvFamily(), SkipFamily(), IRFamily(), IRPoolFamily()):
    register_family(_fam)


def _register_aliases() -> None:
    for k in (1, 3, 5, 7):
        register_alias(f"conv_k{k}", "conv", k=k)
        register_alias(f"conv_k{k}_hs", "conv", k=k, act="hswish")
    for k in (3, 5, 7):
        for g_name, g in (("", {}), ("_g2", {"pw_groups": 2})):
            for se_name, se in (("", {}), ("_se", {"se": "sigmoid"}), ("_sehsig", {"se": "hsigmoid"})):
                for act_name, act in (("", {}), ("_hs", {"act": "hswish"})):
                    register_alias(f"ir_k{k}{g_name}{se_name}{act_name}", "ir", k=k, **g, **se, **act)
    register_alias("ir_pool_hs", "ir_pool", act="hswish")


_register_aliases()
