"""FBNetV2 DMaskingNAS mechanics (seed 000, "FBNet V2", eqs. 1-10): channel masks, resolution subsampling with
interspersed zero padding, the masked supernet and its effective-shape cost.

* Channel search (eqs. 1-3): a searchable conv computes its largest width once; its output is multiplied by
  ``M = sum_i g_i l_i`` where ``l_i`` keeps the first ``c_i`` channels (:func:`channel_mask`). All options
  share one set of weights, so memory and compute do not grow with the number of options.
* Resolution search: each candidate resolution subsamples the input (nearest, :func:`subsample_indices`),
  the body runs on it (receptive fields preserved), and its last feature map goes back to the largest size
  by interspersed zero padding (:func:`intersperse`: pixels keep their relative positions, zeros between
  them), then a Gumbel-weighted sum.
* Effective shapes (eqs. 4-10): ``C_out = sum_i g_i C_i``, ``h = sum_r g_r h_r``; depthwise layers carry their
  input width; per-layer cost ``k^2 h w C_in C_out / groups`` (MACs) or ``k^2 C_in C_out / groups`` (params),
  all differentiable in the Gumbel weights (:meth:`DMaskingSupernet.effective_cost`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fbnas.cost.formulas import ConvShape, conv_out_size
from fbnas.nn.layers import GATES, ConvBNAct, make_act
from fbnas.nn.model import ClassifierHead, init_weights
from fbnas.search.gumbel import gumbel_noise, gumbel_softmax
from fbnas.search.protocols import ArchSample
from fbnas.space.masking import MaskingSpace

# ---- mask algebra ---------------------------------------------------------------------------------


def prefix_masks(options: tuple[int, ...] | list[int], max_channels: int | None = None) -> torch.Tensor:
    """``[K, C]`` matrix whose row ``i`` is ``l_i``: ones on the first ``options[i]`` channels, zeros after."""
    c = int(max_channels or max(options))
    return (torch.arange(c).unsqueeze(0) < torch.as_tensor(list(options)).unsqueeze(1)).float()


def channel_mask(weights: torch.Tensor, options: tuple[int, ...] | list[int],
                 max_channels: int | None = None) -> torch.Tensor:
    """``M = sum_i g_i l_i`` (eq. 3), shape ``[C]``: channel ``j`` gets the weight of the options wider than j."""
    return weights @ prefix_masks(options, max_channels).to(weights)


def effective_channels(weights: torch.Tensor, options: tuple[int, ...] | list[int]) -> torch.Tensor:
    """``sum_i g_i C_i`` (eq. 5): 0.8 * 16 + 0.2 * 12 = 15.2."""
    return weights @ torch.as_tensor(list(options), dtype=weights.dtype, device=weights.device)


def apply_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x o M`` over the channel dimension of an NCHW tensor."""
    return x * mask.view(1, -1, 1, 1)


# ---- resolution -----------------------------------------------------------------------------------


def subsample_indices(small: int, large: int) -> torch.Tensor:
    """Positions in a ``large`` grid of the ``small`` nearest-neighbour samples: ``floor(i * large / small)``.

    For 8 -> 4 this is every other pixel (0, 2, 4, 6); the same positions are where
    :func:`intersperse` puts the small map back, so a pixel returns to where it was sampled.
    """
    return torch.div(torch.arange(small) * large, small, rounding_mode="floor")


def subsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour subsampling of the last two dims to ``size x size`` (no interpolation)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    rows, cols = subsample_indices(size, h).to(x.device), subsample_indices(size, w).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def intersperse(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad ``x`` (``[..., h, w]``) to ``size x size`` with the zeros spread between its pixels.

    Pixel ``(i, j)`` lands on ``(floor(i*size/h), floor(j*size/w))``; every other position is zero.
    Apart from the zeros this is nearest-neighbour upsampling, so pixels of different resolutions align.
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    out = x.new_zeros(*x.shape[:-2], size, size)
    rows = subsample_indices(h, size).to(x.device)
    cols = subsample_indices(w, size).to(x.device)
    out[..., rows.view(-1, 1), cols.view(1, -1)] = x
    return out


# ---- masked layers --------------------------------------------------------------------------------


class MaskedIR(nn.Module):
    """Inverted residual at its largest widths; masks select the hidden width (expansion) and output width.

    Masks go after every activation (BN and act of a zero channel are not zero), so a channel masked to 0
    carries exactly what the narrower child would not have. The residual follows the child: a block whose input
    and output widths are one dimension always adds it (``same``); a stride-1 block between two dimensions adds
    it weighted by the probability that the two widths are equal (``gated``: 1 or 0 at one-hot weights, as the
    child has a residual exactly when its widths agree).
    """

    def __init__(self, cin: int, mid: int, cout: int, stride: int, k: int, se: str | None, se_mid: int,
                 act: str, residual: str | None = None) -> None:
        super().__init__()
        self.pw = ConvBNAct(cin, mid, 1, act=act)
        self.dw = ConvBNAct(mid, mid, k, stride, groups=mid, act=act)
        self.se = None
        if se:
            self.se_pool = nn.AdaptiveAvgPool2d(1)
            self.se_reduce = nn.Conv2d(mid, se_mid, 1, bias=True)
            self.se_act = make_act(act)
            self.se_expand = nn.Conv2d(se_mid, mid, 1, bias=True)
            self.se = GATES[se]()
        self.pwl = ConvBNAct(mid, cout, 1, act=None)
        self.residual = residual

    def forward(self, x: torch.Tensor, mid_mask: torch.Tensor, se_mask: torch.Tensor | None,
                out_mask: torch.Tensor, residual_gate: torch.Tensor | None = None) -> torch.Tensor:
        y = apply_mask(self.pw(x), mid_mask)
        y = apply_mask(self.dw(y), mid_mask)
        if self.se is not None:
            s = self.se_act(self.se_reduce(self.se_pool(y)))
            if se_mask is not None:
                s = apply_mask(s, se_mask)
            y = y * self.se(self.se_expand(s))
        y = apply_mask(self.pwl(y), out_mask)
        if self.residual == "same":
            return x + y
        if self.residual == "gated":
            assert residual_gate is not None
            c = y.shape[1]
            x = x[:, :c] if x.shape[1] >= c else torch.nn.functional.pad(x, (0, 0, 0, 0, 0, c - x.shape[1]))
            return y + residual_gate * x
        return y


@dataclass
class _Cost:
    """Effective shapes of every conv, built per step from the Gumbel weights (list of ConvShape)."""

    shapes: list[ConvShape]

    def total(self, kind: str) -> torch.Tensor:
        out = None
        for s in self.shapes:
            v = s.macs if kind == "macs" else s.params
            out = v if out is None else out + v
        assert out is not None
        return out


def residual_kind(space: MaskingSpace, b) -> str | None:
    """``same``: input and output widths are one dimension; ``gated``: two dimensions that share a width; None."""
    if b.stride != 1:
        return None
    if b.in_group == b.out_group:
        return "same"
    shared = set(space.choices[b.in_group].values) & set(space.choices[b.out_group].values)
    return "gated" if shared else None


class DMaskingSupernet(nn.Module):
    """Stem, masked inverted-residual blocks, last 1x1 conv and classifier; one theta per choice group."""

    def __init__(self, space: MaskingSpace, num_classes: int, hard: bool = False) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes
        self.hard = hard
        g = space.choices
        self.stem = ConvBNAct(space.in_channels, g[space.STEM].values[-1], space.stem_k, space.stem_s,
                              act=space.stem_act)
        self.blocks = nn.ModuleList(
            MaskedIR(g[b.in_group].values[-1], g[b.e_group].values[-1], g[b.out_group].values[-1], b.stride, b.k,
                     b.se, b.se_hidden[-1], b.act, residual_kind(space, b)) for b in space.blocks)
        last_in = g[space.blocks[-1].out_group].values[-1]
        self.last = ConvBNAct(last_in, space.last_c, 1, act=space.last_act)
        self.head = ClassifierHead(space.last_c, num_classes, space.dropout)
        self.theta = nn.ParameterList(nn.Parameter(torch.zeros(len(grp.values))) for grp in g)
        init_weights(self)
        # spatial size after the stem and after every block, per resolution (ascending, as the res group)
        self._sizes = {r: self._spatial_sizes(r) for r in g[space.RES].values}
        for name, options in self._mask_options():
            self.register_buffer(name, prefix_masks(options), persistent=False)
        for bi, b in enumerate(space.blocks):  # [K_in, K_out]: 1 where the two widths are equal
            if self.blocks[bi].residual == "gated":
                eq = torch.tensor([[float(a == c) for c in g[b.out_group].values] for a in g[b.in_group].values])
                self.register_buffer(f"_eq{bi}", eq, persistent=False)

    def _mask_options(self):
        for gi, grp in enumerate(self.space.choices):
            if self.space.kinds[gi] != "res":
                yield f"_l{gi}", grp.values
        for bi, b in enumerate(self.space.blocks):
            if b.se:
                yield f"_lse{bi}", b.se_hidden

    def _spatial_sizes(self, r: int) -> list[int]:
        sp = self.space
        h = conv_out_size(r, sp.stem_k, sp.stem_s, sp.stem_k // 2)
        out = [h]
        for b in sp.blocks:
            h = conv_out_size(h, b.k, b.stride, b.k // 2)
            out.append(h)
        return out

    # ---- parameters (the interface of fbnas.search.supernet.Supernet) ------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.theta)

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def probabilities(self) -> list[torch.Tensor]:
        return [torch.softmax(t.detach(), dim=-1) for t in self.theta]

    def argmax_choices(self) -> list[int]:
        return [int(torch.argmax(t.detach())) for t in self.theta]

    def arch_weights(self, tau: float, generator: torch.Generator, batch_size: int | None = None,
                     hard: bool | None = None) -> ArchSample:
        """Gumbel-softmax weights ``g`` (eq. 4) of every choice group, noise from ``generator``."""
        hard = self.hard if hard is None else hard
        weights = [gumbel_softmax(t, tau, gumbel_noise((t.numel(),), generator).to(t.device), hard=hard)
                   for t in self.theta]
        return ArchSample(weights, float(tau), hard)

    def fixed_weights(self, choices: list[int]) -> ArchSample:
        weights = []
        for t, c in zip(self.theta, choices, strict=True):
            w = torch.zeros_like(t.detach())
            w[int(c)] = 1.0
            weights.append(w)
        return ArchSample(weights, 0.0, True)

    # ---- forward -----------------------------------------------------------------------------------
    def masks(self, weights: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for gi in range(len(self.space.choices)):
            if self.space.kinds[gi] != "res":
                out[f"g{gi}"] = weights[gi] @ getattr(self, f"_l{gi}")
        for bi, b in enumerate(self.space.blocks):
            if b.se:
                out[f"se{bi}"] = weights[b.e_group] @ getattr(self, f"_lse{bi}")
            if self.blocks[bi].residual == "gated":
                out[f"res{bi}"] = weights[b.in_group] @ getattr(self, f"_eq{bi}") @ weights[b.out_group]
        return out

    def body(self, x: torch.Tensor, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        sp = self.space
        x = apply_mask(self.stem(x), masks[f"g{sp.STEM}"])
        for bi, (b, block) in enumerate(zip(sp.blocks, self.blocks, strict=True)):
            x = block(x, masks[f"g{b.e_group}"], masks.get(f"se{bi}"), masks[f"g{b.out_group}"], masks.get(f"res{bi}"))
        return self.last(x)

    def forward(self, x: torch.Tensor, sample: ArchSample) -> torch.Tensor:
        """Resolutions run the body on subsampled inputs; outputs are interspersed back and Gumbel-summed.

        Each padded map is scaled by (S/s)^2 so the classifier's global average pool of the sum equals
        ``sum_r g_r pool(f_r)``: what the child at resolution r computes.
        """
        weights = sample.weights
        masks = self.masks(weights)
        res_w = weights[self.space.RES]
        resolutions = self.space.choices[self.space.RES].values
        size = self._sizes[resolutions[-1]][-1]
        out = None
        for i, r in enumerate(resolutions):
            if sample.hard and not res_w.requires_grad and float(res_w[i]) == 0.0:
                continue  # the weight step of hard mode: an unsampled resolution contributes nothing
            f = self.body(subsample(x, r), masks)
            scale = (size * size) / float(f.shape[-1] * f.shape[-2])
            y = intersperse(f, size) * (res_w[i] * scale)
            out = y if out is None else out + y
        assert out is not None
        return self.head(out)

    # ---- effective shapes (eqs. 5-10) --------------------------------------------------------------
    def effective_shapes(self, weights: list[torch.Tensor], dtype: torch.dtype = torch.float64) -> _Cost:
        """ConvShape of every conv with effective channels and sizes (tensors), in network order."""
        sp = self.space
        w = [t.to(dtype) for t in weights]
        g = sp.choices
        res = g[sp.RES].values
        sizes = [effective_channels(w[sp.RES], [self._sizes[r][i] for r in res])
                 for i in range(len(sp.blocks) + 1)]

        def ch(gi: int) -> torch.Tensor:
            return effective_channels(w[gi], g[gi].values)

        shapes = [ConvShape(sp.in_channels, ch(sp.STEM), sp.stem_k, 1, sizes[0], sizes[0], label="stem")]
        h_in = sizes[0]
        for bi, b in enumerate(sp.blocks):
            cin, mid, cout = ch(b.in_group), ch(b.e_group), ch(b.out_group)
            h_out = sizes[bi + 1]
            shapes.append(ConvShape(cin, mid, 1, 1, h_in, h_in, label=f"b{bi}.pw"))
            shapes.append(ConvShape(mid, mid, b.k, mid, h_out, h_out, label=f"b{bi}.dw"))  # eq. 9: C_out = C_in
            if b.se:
                se_mid = effective_channels(w[b.e_group], b.se_hidden)
                shapes.append(ConvShape(mid, se_mid, 1, 1, 1, 1, label=f"b{bi}.se.reduce"))
                shapes.append(ConvShape(se_mid, mid, 1, 1, 1, 1, label=f"b{bi}.se.expand"))
            shapes.append(ConvShape(mid, cout, 1, 1, h_out, h_out, label=f"b{bi}.pwl"))
            h_in = h_out
        last_in = ch(sp.blocks[-1].out_group)
        shapes.append(ConvShape(last_in, sp.last_c, 1, 1, h_in, h_in, label="last"))
        shapes.append(ConvShape(sp.last_c, self.num_classes, 1, 1, 1, 1, label="classifier"))
        return _Cost(shapes)

    def effective_cost(self, weights: list[torch.Tensor], kind: str = "macs",
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Total MACs or params (eq. 10 summed over layers), differentiable w.r.t. the Gumbel weights."""
        return self.effective_shapes(weights, dtype).total(kind)


def _copy_conv_bn(dst: nn.Module, src: nn.Module, cout: int, cin: int | None) -> None:
    """Copy a ConvBNAct's first ``cout`` output (and ``cin`` input) channels into the narrower ``dst``."""
    w = src.conv.weight
    dst.conv.weight.copy_(w[:cout] if cin is None else w[:cout, :cin])
    if src.conv.bias is not None:
        dst.conv.bias.copy_(src.conv.bias[:cout])
    if hasattr(src, "bn"):
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst.bn, name).copy_(getattr(src.bn, name)[:cout])
        dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)


@torch.no_grad()
def export_child(net: DMaskingSupernet, choices: list[int]) -> nn.Module:
    """The child network of ``choices`` (an :class:`fbnas.nn.model.FBNetModel` of ``space.to_spec``) holding
    the first channels of the supernet's shared weights: what the masked supernet computes at one-hot weights."""
    from fbnas.nn.model import FBNetModel

    sp = net.space
    val = [g.values[int(c)] for g, c in zip(sp.choices, choices, strict=True)]
    child = FBNetModel(sp.to_spec(choices), net.num_classes)
    feats = list(child.features)
    _copy_conv_bn(feats[0], net.stem, val[sp.STEM], None)
    for b, block, dst in zip(sp.blocks, net.blocks, feats[1:-1], strict=True):
        cin, mid, cout = val[b.in_group], val[b.e_group], val[b.out_group]
        _copy_conv_bn(dst.pw, block.pw, mid, cin)
        _copy_conv_bn(dst.dw, block.dw, mid, None)
        if b.se:
            se_mid = b.se_hidden[sp.choices[b.e_group].values.index(mid)]
            dst.se.reduce.weight.copy_(block.se_reduce.weight[:se_mid, :mid])
            dst.se.reduce.bias.copy_(block.se_reduce.bias[:se_mid])
            dst.se.expand.weight.copy_(block.se_expand.weight[:mid, :se_mid])
            dst.se.expand.bias.copy_(block.se_expand.bias[:mid])
        _copy_conv_bn(dst.pwl, block.pwl, cout, mid)
    _copy_conv_bn(feats[-1], net.last, sp.last_c, val[sp.blocks[-1].out_group])
    child.head.fc.load_state_dict(net.head.fc.state_dict())
    return child


class EffectiveCostModel:
    """The :class:`fbnas.search.loss.CostModel` interface over effective shapes (MMACs or M params)."""

    def __init__(self, net: DMaskingSupernet, kind: str) -> None:
        from fbnas.cost.terms import COST_UNITS

        self.net, self.kind, self.unit = net, kind, COST_UNITS[kind]

    def expected(self, weights: list[torch.Tensor]) -> torch.Tensor:
        return (self.net.effective_cost(weights, self.kind) / 1e6).to(weights[0].dtype)

    def of_choices(self, choices: list[int]) -> float:
        return float(self.net.effective_cost(self.net.fixed_weights(choices).weights, self.kind)) / 1e6

    def min_max(self) -> tuple[float, float]:
        sp = self.net.space
        return self.of_choices([0] * len(sp.choices)), self.of_choices(sp.max_choices())
