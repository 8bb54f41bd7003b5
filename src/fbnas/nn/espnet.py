"""ESPNet V1/V2 ops: the ESP module with hierarchical feature fusion, EESP, ESPNetV2's down-sampler with input
reinforcement, and ESPNet-C's image concatenation and levels.

ESP (ESPNet, arXiv 1803.06815, Sec. 3.1): a 1x1 reduction to n = C/K channels (3x3 stride 2 when
down-sampling), K parallel dilated 3x3 convs with dilation 2^(k-1), hierarchical feature fusion (HFF: each
branch adds the sum of the branches before it, against gridding), concat, residual add, BN + PReLU.
EESP (ESPNetV2, arXiv 1811.11431, Sec. 3.2): a group 1x1 (K groups) to n = C/K, K depthwise dilated 3x3 branches
whose receptive fields 3, 5, 7, ... stop at ``r_lim`` (beyond it a branch falls back to dilation 1), HFF, BN +
PReLU, group 1x1 expansion + BN, residual, PReLU. Its down-sampler concatenates a 3x3 average pool of the input
with a strided EESP and adds the input image, average-pooled to the output size and projected by a 3x3 CBR and
a 1x1 CB (input reinforcement), then PReLU. Channel rules follow the official definitions (sacmehta/ESPNet,
sacmehta/EdgeNets).

Blocks that read the network's input image set ``takes_image`` and are called as ``block(x, image)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fbnas.cost.formulas import ConvShape, conv_out_size
from fbnas.errors import SpecError
from fbnas.nn.family import FLAG, OpFamily, Param, register_family
from fbnas.nn.layers import ACTIVATIONS, BNAct, ConvBNAct, drop_path, has_params, make_act

REINF_HIDDEN = 3  # ESPNetV2's config_inp_reinf: the CBR of the input reinforcement has 3 channels


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _odd_at_least_3(v: Any) -> bool:
    return _pos_int(v) and v >= 3 and v % 2 == 1


ESP_ACT = Param("prelu", lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")
REINF = Param(0, _nonneg_int, "0 (off) or the network's input channels")


def pool_to(image: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool (3x3, stride 2, padding 1) the image until its width is ``size`` (ESPNet's InputProjectionA,
    ESPNetV2's DownSampler loop)."""
    while image.shape[-1] > size:
        image = F.avg_pool2d(image, kernel_size=3, stride=2, padding=1)
    return image


def _split(cout: int, k: int, where: str) -> tuple[int, int]:
    """(n, n1): K - 1 branches of n = C/K channels and a first branch with the remainder (ESP)."""
    n = cout // k
    if n < 1:
        raise SpecError(f"{where}: {cout} output channels cannot be split into k={k} branches")
    return n, cout - (k - 1) * n


# ---------------------------------------------------------------------------------------------------
class ESPModule(nn.Module):
    """Reduce -> K dilated 3x3 branches -> HFF -> concat -> [+ input] -> BN + PReLU."""

    def __init__(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        super().__init__()
        k = p["k"]
        n, n1 = _split(cout, k, "esp")
        red_k = 3 if stride == 2 else 1
        self.reduce = ConvBNAct(cin, n, red_k, stride, bn=False, act=None)
        self.branches = nn.ModuleList(
            ConvBNAct(n, n1 if i == 0 else n, 3, bn=False, act=None, dilation=2 ** i) for i in range(k))
        self.residual = p["residual"] and cin == cout and stride == 1
        self.out = BNAct(cout, p["act"])
        self.drop_path_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduce(x)
        outs = [self.branches[0](r)]
        fused = None
        for branch in self.branches[1:]:  # HFF: add1 = d2, add2 = add1 + d4, ...
            y = branch(r)
            fused = y if fused is None else fused + y
            outs.append(fused)
        y = torch.cat(outs, dim=1)
        if self.residual:
            y = x + drop_path(y, self.drop_path_rate, self.training)
        return self.out(y)


def esp_shapes(cin: int, cout: int, stride: int, h: int, w: int, p: dict[str, Any],
               label: str = "esp") -> tuple[list[ConvShape], int, int]:
    k = p["k"]
    n, n1 = _split(cout, k, "esp")
    red_k = 3 if stride == 2 else 1
    ho, wo = conv_out_size(h, red_k, stride, red_k // 2), conv_out_size(w, red_k, stride, red_k // 2)
    out = [ConvShape(cin, n, red_k, 1, ho, wo, label=f"{label}.reduce")]
    out += [ConvShape(n, n1 if i == 0 else n, 3, 1, ho, wo, dilation=2 ** i, label=f"{label}.d{2 ** i}")
            for i in range(k)]
    out.append(ConvShape.norm(cout, ho, wo, prelu=has_params(p["act"]), label=f"{label}.br"))
    return out, ho, wo


class ESPFamily(OpFamily):
    """``esp``: ESPNet's module; stride 2 is its down-sampler (3x3 strided reduction, no residual)."""

    name = "esp"
    params = {"k": Param(5, _pos_int, "a positive integer"), "residual": Param(True, FLAG.check, FLAG.expect),
              "act": ESP_ACT}

    def build(self, cin, cout, stride, p):
        return ESPModule(cin, cout, stride, p)

    def shapes(self, cin, cout, stride, h, w, p):
        return esp_shapes(cin, cout, stride, h, w, p)


# ---------------------------------------------------------------------------------------------------
def eesp_dilations(k: int, r_lim: int) -> list[int]:
    """Dilations of the K branches: receptive fields 3, 5, 7, ... capped at ``r_lim`` (else 3), sorted."""
    sizes = sorted(3 + 2 * i if 3 + 2 * i <= r_lim else 3 for i in range(k))
    return [(s - 1) // 2 for s in sizes]


def _eesp_check(cin: int, cout: int, k: int, where: str) -> int:
    if cout % k or cin % k or (cout // k) % k:
        raise SpecError(f"{where}: k={k} must divide the input ({cin}) and output ({cout}) channels and "
                        f"the branch width ({cout // k if cout >= k else 0})")
    return cout // k


class EESPModule(nn.Module):
    """Group 1x1 (K) +BN+PReLU -> K depthwise dilated 3x3 -> HFF -> concat -> BN+PReLU -> group 1x1 (K) +BN
    -> [+ input] -> PReLU (``final_act=False``: the down-sampler's branch, which ends before the residual)."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, r_lim: int, act: str,
                 final_act: bool = True) -> None:
        super().__init__()
        n = _eesp_check(cin, cout, k, "eesp")
        self.proj = ConvBNAct(cin, n, 1, groups=k, act=act)
        self.branches = nn.ModuleList(ConvBNAct(n, n, 3, stride, groups=n, bn=False, act=None, dilation=d)
                                      for d in eesp_dilations(k, r_lim))
        self.br = BNAct(cout, act)
        self.expand = ConvBNAct(cout, cout, 1, groups=k, act=None)
        self.residual = final_act and cin == cout and stride == 1
        self.act = make_act(act, cout) if final_act else None
        self.drop_path_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.proj(x)
        outs = [self.branches[0](r)]
        for branch in self.branches[1:]:  # HFF over the branches sorted by receptive field
            outs.append(branch(r) + outs[-1])
        y = self.expand(self.br(torch.cat(outs, dim=1)))
        if self.act is None:
            return y
        if self.residual:
            y = x + drop_path(y, self.drop_path_rate, self.training)
        return self.act(y)


def eesp_shapes(cin: int, cout: int, stride: int, h: int, w: int, k: int, r_lim: int, act: str,
                final_act: bool = True, label: str = "eesp") -> tuple[list[ConvShape], int, int]:
    n = _eesp_check(cin, cout, k, label)
    prelu = has_params(act)
    ho, wo = conv_out_size(h, 3, stride, 1), conv_out_size(w, 3, stride, 1)
    out = [ConvShape(cin, n, 1, k, h, w, bn=True, prelu=prelu, label=f"{label}.proj")]
    out += [ConvShape(n, n, 3, n, ho, wo, dilation=d, label=f"{label}.d{d}") for d in eesp_dilations(k, r_lim)]
    out.append(ConvShape.norm(cout, ho, wo, prelu=prelu, label=f"{label}.br"))
    out.append(ConvShape(cout, cout, 1, k, ho, wo, bn=True, label=f"{label}.expand"))
    if final_act:
        out.append(ConvShape.norm(cout, ho, wo, bn=False, prelu=prelu, label=f"{label}.act"))
    return out, ho, wo


class EESPFamily(OpFamily):
    """``eesp``: ESPNetV2's module (stride 2: the strided EESP with its PReLU, no residual)."""

    name = "eesp"
    params = {"k": Param(4, _pos_int, "a positive integer"), "r_lim": Param(7, _odd_at_least_3, "an odd integer >= 3"),
              "act": ESP_ACT}

    def build(self, cin, cout, stride, p):
        return EESPModule(cin, cout, stride, p["k"], p["r_lim"], p["act"])

    def shapes(self, cin, cout, stride, h, w, p):
        return eesp_shapes(cin, cout, stride, h, w, p["k"], p["r_lim"], p["act"])


# ---------------------------------------------------------------------------------------------------
class InputReinforcement(nn.Module):
    """The network's input image, average-pooled to the output size, through a 3x3 CBR and a 1x1 CB."""

    def __init__(self, image_channels: int, cout: int, act: str) -> None:
        super().__init__()
        self.cbr = ConvBNAct(image_channels, REINF_HIDDEN, 3, act=act)
        self.cb = ConvBNAct(REINF_HIDDEN, cout, 1, act=None)

    def forward(self, image: torch.Tensor, size: int) -> torch.Tensor:
        return self.cb(self.cbr(pool_to(image, size)))


def reinf_shapes(image_channels: int, cout: int, ho: int, wo: int, act: str) -> list[ConvShape]:
    return [ConvShape(image_channels, REINF_HIDDEN, 3, 1, ho, wo, bn=True, prelu=has_params(act), label="reinf.cbr"),
            ConvShape(REINF_HIDDEN, cout, 1, 1, ho, wo, bn=True, label="reinf.cb")]


class EESPDownSampler(nn.Module):
    """concat(3x3 avg pool of x, strided EESP to c_out - c_in) [+ input reinforcement] -> PReLU."""

    def __init__(self, cin: int, cout: int, p: dict[str, Any]) -> None:
        super().__init__()
        if cout <= cin:
            raise SpecError(f"eesp_down: output channels ({cout}) must exceed the input channels ({cin}): "
                            "it concatenates the pooled input with new maps")
        self.eesp = EESPModule(cin, cout - cin, 2, p["k"], p["r_lim"], p["act"], final_act=False)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.reinf = InputReinforcement(p["reinf"], cout, p["act"]) if p["reinf"] else None
        self.takes_image = self.reinf is not None
        self.act = make_act(p["act"], cout)
        # parameters the official DownSampler holds but never uses (kept only so that sum(numel) matches it)
        self.unused = nn.ModuleDict()
        if p["unused_act"]:
            self.unused["eesp_act"] = make_act(p["act"], cout - cin)
        if p["unused_reinf"]:
            self.unused["reinf"] = InputReinforcement(p["unused_reinf"], cout, p["act"])

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.cat([self.pool(x), self.eesp(x)], dim=1)
        if self.reinf is not None:
            if image is None:
                raise ValueError("eesp_down with reinf needs the network's input image")
            y = y + self.reinf(image, y.shape[-1])
        return self.act(y)


class EESPDownFamily(OpFamily):
    """``eesp_down``: ESPNetV2's down-sampler (stride 2); ``reinf`` = the input image's channels (0: none).

    ``unused_act`` / ``unused_reinf`` (image channels) add parameters that the official definition creates and
    never uses in its forward pass: the strided EESP's final PReLU (every down-sampler) and an input
    reinforcement branch (the last down-sampler, called without the image). They change params, not the function
    or the MACs; the zoo's ESPNetV2 models set them so that their parameter counts are the official ones.
    """

    name = "eesp_down"
    params = {"k": Param(4, _pos_int, "a positive integer"), "r_lim": Param(9, _odd_at_least_3, "an odd integer >= 3"),
              "reinf": REINF, "act": ESP_ACT, "unused_act": FLAG, "unused_reinf": Param(0, _nonneg_int,
                                                                                          "a non-negative integer")}

    def build(self, cin, cout, stride, p):
        if stride != 2:
            raise SpecError("eesp_down must have stride 2")
        return EESPDownSampler(cin, cout, p)

    def shapes(self, cin, cout, stride, h, w, p):
        if cout <= cin:
            raise SpecError(f"eesp_down: output channels ({cout}) must exceed the input channels ({cin})")
        out, ho, wo = eesp_shapes(cin, cout - cin, 2, h, w, p["k"], p["r_lim"], p["act"], final_act=False)
        if p["reinf"]:
            out += reinf_shapes(p["reinf"], cout, ho, wo, p["act"])
        out.append(ConvShape.norm(cout, ho, wo, bn=False, prelu=has_params(p["act"]), label="act"))
        if p["unused_act"]:
            out.append(ConvShape.norm(cout - cin, ho, wo, bn=False, prelu=has_params(p["act"]), label="unused.act"))
        if p["unused_reinf"]:  # on a 0x0 map: its parameters without MACs, the branch never runs
            out += [replace(s, h_out=0, w_out=0, label=f"unused.{s.label}")
                    for s in reinf_shapes(p["unused_reinf"], cout, ho, wo, p["act"])]
        return out, ho, wo


# ---------------------------------------------------------------------------------------------------
class ImageConcat(nn.Module):
    """concat(x, the input image average-pooled to x's size) -> BN + PReLU (ESPNet-C after its first conv)."""

    takes_image = True

    def __init__(self, cout: int, act: str) -> None:
        super().__init__()
        self.out = BNAct(cout, act)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([x, pool_to(image, x.shape[-1])], dim=1))


class ImageConcatFamily(OpFamily):
    name = "image_concat"
    params = {"reinf": REINF, "act": ESP_ACT}

    def _check(self, cin: int, cout: int, stride: int, p: dict[str, Any]) -> None:
        if stride != 1 or not p["reinf"] or cout != cin + p["reinf"]:
            raise SpecError(f"image_concat needs stride 1, reinf > 0 and c_out = c_in + reinf "
                            f"(got stride {stride}, reinf {p['reinf']}, {cin} -> {cout})")

    def build(self, cin, cout, stride, p):
        self._check(cin, cout, stride, p)
        return ImageConcat(cout, p["act"])

    def shapes(self, cin, cout, stride, h, w, p):
        self._check(cin, cout, stride, p)
        return [ConvShape.norm(cout, h, w, prelu=has_params(p["act"]), label="br")], h, w


class ESPLevel(nn.Module):
    """ESPNet-C's level: a down-sampling ESP to width w, n ESP modules, concat of the last and first outputs
    (``order``) [and the pooled input image], BN + PReLU; c_out = 2 w (+ reinf)."""

    def __init__(self, cin: int, cout: int, p: dict[str, Any]) -> None:
        super().__init__()
        width = esp_level_width(cout, p)
        esp = {"k": p["k"], "residual": True, "act": p["act"]}
        self.down = ESPModule(cin, width, 2, esp)
        self.blocks = nn.Sequential(*[ESPModule(width, width, 1, esp) for _ in range(p["n"])])
        self.first_last = p["order"] == "first_last"
        self.takes_image = bool(p["reinf"])
        self.out = BNAct(cout, p["act"])

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        first = self.down(x)
        last = self.blocks(first)
        parts = [first, last] if self.first_last else [last, first]
        if self.takes_image:
            if image is None:
                raise ValueError("esp_level with reinf needs the network's input image")
            parts.append(pool_to(image, first.shape[-1]))
        return self.out(torch.cat(parts, dim=1))


def esp_level_width(cout: int, p: dict[str, Any]) -> int:
    width, odd = divmod(cout - p["reinf"], 2)
    if odd or width < 1:
        raise SpecError(f"esp_level: c_out - reinf ({cout - p['reinf']}) must be twice the level width")
    return width


class ESPLevelFamily(OpFamily):
    name = "esp_level"
    params = {"n": Param(2, _nonneg_int, "a non-negative integer"), "k": Param(5, _pos_int, "a positive integer"),
              "reinf": REINF, "order": Param("last_first", lambda v: v in ("last_first", "first_last"),
                                             "'last_first' or 'first_last'"), "act": ESP_ACT}

    def build(self, cin, cout, stride, p):
        if stride != 2:
            raise SpecError("esp_level must have stride 2")
        return ESPLevel(cin, cout, p)

    def shapes(self, cin, cout, stride, h, w, p):
        width = esp_level_width(cout, p)
        esp = {"k": p["k"], "residual": True, "act": p["act"]}
        out, ho, wo = esp_shapes(cin, width, 2, h, w, esp, "down")
        for i in range(p["n"]):
            out += esp_shapes(width, width, 1, ho, wo, esp, f"esp{i}")[0]
        out.append(ConvShape.norm(cout, ho, wo, prelu=has_params(p["act"]), label="br"))
        return out, ho, wo


for _fam in (ESPFamily(), EESPFamily(), EESPDownFamily(), ImageConcatFamily(), ESPLevelFamily()):
    register_family(_fam)
