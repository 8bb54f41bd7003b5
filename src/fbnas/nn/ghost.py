"""GhostNet V1/V2 ops: the Ghost module, its DFC attention, the Ghost bottleneck and GhostNet's pooled head.

GhostNet (arXiv 1911.11907, eq. 2-3): a primary conv makes m = ceil(n / s) intrinsic maps and a cheap depthwise
d x d conv makes (s - 1) "ghosts" of each, so the module costs about 1/s of a plain conv producing n maps.
GhostNetV2 (NeurIPS 2022, eq. 5-6): DFC attention gates the module's output with a decoupled fully connected
attention: 2x average pool, 1x1 conv, depthwise 1x5 (horizontal) and 5x1 (vertical) convs, sigmoid, nearest
upsampling, multiply. Channel rules follow the official definitions (timm's ghostnet.py): SE squeezes to
make_divisible(mid * ratio, 4) with a hard-sigmoid gate, the shortcut is identity or depthwise + 1x1 convs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fbnas.channels import make_divisible
from fbnas.cost.formulas import ConvShape, conv_out_size
from fbnas.errors import SpecError
from fbnas.nn.family import ACT, EXPANSION, FLAG, KERNEL, OpFamily, Param, register_alias, register_family
from fbnas.nn.layers import ConvBNAct, SqueezeExcite, drop_path, has_params


def _ratio(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 2


def _se_ratio(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def _opt_pos_int(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)


RATIO = Param(2, _ratio, "an integer >= 2")
DW_KERNEL = Param(3, lambda v: KERNEL.check(v), "an odd positive integer")
SE_RATIO = Param(0.0, _se_ratio, "a number in [0, 1] (0: no SE)")
MID = Param(None, _opt_pos_int, "null or a positive integer")
DFC_KERNEL = 5  # GhostNetV2's decoupled 1x5 / 5x1 kernels
SE_DIVISOR = 4  # GhostNet rounds SE channels to multiples of 4 (90% rule)


def ghost_channels(cout: int, ratio: int) -> tuple[int, int]:
    """(intrinsic, ghost) channels: m = ceil(n / s) primary maps and m (s - 1) cheap ones (eq. 2)."""
    init = math.ceil(cout / ratio)
    return init, init * (ratio - 1)


def dfc_size(h: int, w: int) -> tuple[int, int]:
    """The DFC branch runs on a 2x2 average-pooled (floor) map."""
    hp, wp = h // 2, w // 2
    if hp < 1 or wp < 1:
        raise SpecError(f"DFC attention needs an input of at least 2x2, got {h}x{w}")
    return hp, wp


class DFCAttention(nn.Module):
    """Decoupled fully connected attention (GhostNetV2 eq. 6): pool, 1x1 conv, 1x5 and 5x1 depthwise, sigmoid."""

    def __init__(self, cin: int, cout: int, k: int, stride: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(cin, cout, k, stride, act=None)
        self.horizontal = ConvBNAct(cout, cout, (1, DFC_KERNEL), groups=cout, act=None)
        self.vertical = ConvBNAct(cout, cout, (DFC_KERNEL, 1), groups=cout, act=None)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        a = self.vertical(self.horizontal(self.conv(F.avg_pool2d(x, kernel_size=2, stride=2))))
        return F.interpolate(torch.sigmoid(a), size=size, mode="nearest")


def dfc_shapes(cin: int, cout: int, k: int, stride: int, h: int, w: int) -> list[ConvShape]:
    hp, wp = dfc_size(h, w)
    hc, wc = conv_out_size(hp, k, stride, k // 2), conv_out_size(wp, k, stride, k // 2)
    return [ConvShape(cin, cout, k, 1, hc, wc, bn=True, label="dfc.conv"),
            ConvShape(cout, cout, 1, cout, hc, wc, bn=True, kernel_w=DFC_KERNEL, label="dfc.horizontal"),
            ConvShape(cout, cout, DFC_KERNEL, cout, hc, wc, bn=True, kernel_w=1, label="dfc.vertical")]


class GhostModule(nn.Module):
    """Primary kxk conv (+BN+act) to ceil(n/s) maps, cheap depthwise conv (+BN+act) to the ghosts, concat, cut to n;
    with ``dfc`` the output is gated by DFC attention computed from the module's input."""

    def __init__(self, cin: int, cout: int, stride: int = 1, k: int = 1, ratio: int = 2, dw_k: int = 3,
                 act: str | None = "relu", dfc: bool = False) -> None:
        super().__init__()
        init, new = ghost_channels(cout, ratio)
        self.cout = cout
        self.primary = ConvBNAct(cin, init, k, stride, act=act)
        self.cheap = ConvBNAct(init, new, dw_k, 1, groups=init, act=act)
        self.dfc = DFCAttention(cin, cout, k, stride) if dfc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.primary(x)
        y = torch.cat([y1, self.cheap(y1)], dim=1)[:, : self.cout]
        if self.dfc is not None:
            y = y * self.dfc(x, (y.shape[-2], y.shape[-1]))
        return y


def ghost_module_shapes(cin: int, cout: int, stride: int, h: int, w: int, k: int, ratio: int, dw_k: int,
                        act: str | None, dfc: bool, label: str) -> tuple[list[ConvShape], int, int]:
    init, new = ghost_channels(cout, ratio)
    ho, wo = conv_out_size(h, k, stride, k // 2), conv_out_size(w, k, stride, k // 2)
    prelu = has_params(act)
    out = [ConvShape(cin, init, k, 1, ho, wo, bn=True, prelu=prelu, label=f"{label}.primary"),
           ConvShape(init, new, dw_k, init, ho, wo, bn=True, prelu=prelu, label=f"{label}.cheap")]
    if dfc:
        out += dfc_shapes(cin, cout, k, stride, h, w)
    return out, ho, wo


class GhostFamily(OpFamily):
    """The Ghost module as an op (``ghost``; ``ghost_v2`` adds DFC attention). ``k``: primary kernel, ``ratio``: s,
    ``dw_k``: the cheap depthwise kernel; the stride goes to the primary conv."""

    name = "ghost"
    params = {"k": Param(1, KERNEL.check, KERNEL.expect), "ratio": RATIO, "dw_k": DW_KERNEL, "act": ACT,
              "dfc": FLAG}

    def build(self, cin, cout, stride, p):
        return GhostModule(cin, cout, stride, p["k"], p["ratio"], p["dw_k"], p["act"], p["dfc"])

    def shapes(self, cin, cout, stride, h, w, p):
        return ghost_module_shapes(cin, cout, stride, h, w, p["k"], p["ratio"], p["dw_k"], p["act"], p["dfc"],
                                   "ghost")


def bneck_channels(cin: int, p: dict[str, Any]) -> tuple[int, int]:
    """(mid, se_mid) of a Ghost bottleneck: ``mid`` as given, else make_divisible(c_in * e); SE from mid."""
    mid = p["mid"] if p["mid"] is not None else make_divisible(cin * p["e"], p["width_divisor"])
    se_mid = make_divisible(mid * p["se"], SE_DIVISOR, round_limit=0.9) if p["se"] else 0
    return mid, se_mid


class GhostBottleneck(nn.Module):
    """Ghost module (+act) -> [strided depthwise + BN] -> [SE, hard-sigmoid] -> Ghost module (no act) -> + shortcut.

    The shortcut is the identity when shapes agree, else depthwise kxk (stride) + BN and 1x1 + BN (GhostNet
    Fig. 3); ``dfc`` puts DFC attention on the first Ghost module (GhostNetV2).
    """

    def __init__(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        super().__init__()
        mid, se_mid = bneck_channels(cin, p)
        k, act = p["k"], p["act"]
        self.ghost1 = GhostModule(cin, mid, 1, 1, p["ratio"], p["dw_k"], act, dfc=p["dfc"])
        self.dw = ConvBNAct(mid, mid, k, stride, groups=mid, act=None) if stride > 1 else None
        self.se = SqueezeExcite(mid, se_mid, act=act, gate="hsigmoid") if p["se"] else None
        self.ghost2 = GhostModule(mid, cout, 1, 1, p["ratio"], p["dw_k"], None)
        self.identity = cin == cout and stride == 1
        self.shortcut = None if self.identity else nn.Sequential(
            ConvBNAct(cin, cin, k, stride, groups=cin, act=None), ConvBNAct(cin, cout, 1, act=None))
        self.drop_path_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.dw is not None:
            y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.ghost2(y)
        if self.shortcut is None:
            return x + drop_path(y, self.drop_path_rate, self.training)
        return y + self.shortcut(x)


class GhostBottleneckFamily(OpFamily):
    name = "ghost_bneck"
    params = {"k": KERNEL, "e": EXPANSION, "mid": MID, "se": SE_RATIO, "act": ACT, "ratio": RATIO, "dw_k": DW_KERNEL,
              "dfc": FLAG}

    def build(self, cin, cout, stride, p):
        return GhostBottleneck(cin, cout, stride, p)

    def shapes(self, cin, cout, stride, h, w, p):
        mid, se_mid = bneck_channels(cin, p)
        k, act = p["k"], p["act"]
        out, ho, wo = ghost_module_shapes(cin, mid, 1, h, w, 1, p["ratio"], p["dw_k"], act, p["dfc"], "ghost1")
        if stride > 1:
            ho, wo = conv_out_size(h, k, stride, k // 2), conv_out_size(w, k, stride, k // 2)
            out.append(ConvShape(mid, mid, k, mid, ho, wo, bn=True, label="dw"))
        if p["se"]:
            out += [ConvShape.pool(mid, ho, wo, label="se.pool"),
                    ConvShape(mid, se_mid, 1, 1, 1, 1, bias=True, prelu=has_params(act), label="se.reduce"),
                    ConvShape(se_mid, mid, 1, 1, 1, 1, bias=True, label="se.expand")]
        out += ghost_module_shapes(mid, cout, 1, ho, wo, 1, p["ratio"], p["dw_k"], None, False, "ghost2")[0]
        if not (cin == cout and stride == 1):
            out += [ConvShape(cin, cin, k, cin, ho, wo, bn=True, label="shortcut.dw"),
                    ConvShape(cin, cout, 1, 1, ho, wo, bn=True, label="shortcut.pw")]
        return out, ho, wo


class PoolConv(nn.Module):
    """Global average pool, then a 1x1 conv with bias and an activation, no BN (GhostNet's conv_head)."""

    def __init__(self, cin: int, cout: int, act: str) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvBNAct(cin, cout, 1, bias=True, bn=False, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class PoolConvFamily(OpFamily):
    name = "pool_conv"
    params = {"act": ACT}

    def build(self, cin, cout, stride, p):
        if stride != 1:
            raise SpecError("pool_conv must have stride 1")
        return PoolConv(cin, cout, p["act"])

    def shapes(self, cin, cout, stride, h, w, p):
        return [ConvShape.pool(cin, h, w),
                ConvShape(cin, cout, 1, 1, 1, 1, bias=True, prelu=has_params(p["act"]), label="conv")], 1, 1


for _fam in (GhostFamily(), GhostBottleneckFamily(), PoolConvFamily()):
    register_family(_fam)


def _register_aliases() -> None:
    register_alias("ghost_v2", "ghost", dfc=True)
    for k in (3, 5):
        for se_name, se in (("", {}), ("_se", {"se": 0.25})):
            register_alias(f"ghost_bneck_k{k}{se_name}", "ghost_bneck", k=k, **se)
            register_alias(f"ghost_bneck_v2_k{k}{se_name}", "ghost_bneck", k=k, dfc=True, **se)


_register_aliases()
