"""FBNetV1 stochastic supernet (arXiv 1812.03443, eqs. 4-5, 8): one MixedOp per searchable layer.

A MixedOp holds the candidate blocks of one layer and their architecture logits ``theta_l`` (zeros at
start, so P_theta is uniform). Every step the caller draws Gumbel-softmax weights ``m_l`` for all layers
(:meth:`Supernet.arch_weights`) and passes them to ``forward``; the same weights feed the latency
expectation of the loss (eq. 9), so forward and cost see one sample.

Two execution modes:

* ``soft``: every candidate runs and the output is ``sum_i m_i * b_i(x)`` (the paper).
* ``hard``: straight-through Gumbel. ``m`` is one-hot in the forward pass and only the sampled
  candidate runs; the output is ``m_hard[i] * b_i(x)`` whose value is ``b_i(x)`` and whose gradient
  w.r.t. ``m_i`` is ``<dL/dy, b_i(x)>``, which flows to theta through the relaxed weights. That is
  exactly the soft-mode gradient component of the executed branch (the other components are dropped).

Weights may be per batch (``[K]`` per layer) or per sample (``[B, K]``); per-sample hard mode runs each
sampled candidate on its own sub-batch.
"""

from __future__ import annotations

import torch
from torch import nn

from fbnas.nn.model import ClassifierHead, FBNetModel, build_block, init_weights
from fbnas.search.gumbel import gumbel_noise, gumbel_softmax
from fbnas.search.protocols import ArchSample
from fbnas.space.layerwise import LayerwiseSpace

MODES = ("soft", "hard")
NOISE = ("batch", "sample")


class _StraightThroughScale(torch.autograd.Function):
    """``y * w`` where ``w == 1`` in value: forward returns ``y`` without a copy or a multiply.

    Backward passes ``grad`` to ``y`` unchanged (since w == 1) and gives ``w`` the gradient
    ``sum(grad * y)``, which is what autograd would compute for the product, minus two full passes.
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(y)
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.sum(grad * y).reshape(())
        return grad, grad_w


def straight_through_scale(y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Multiply ``y`` by a scalar weight whose forward value is 1 (straight-through one-hot weight)."""
    if not w.requires_grad:
        return y
    return _StraightThroughScale.apply(y, w)


class MixedOp(nn.Module):
    """Candidate blocks of one searchable layer plus their logits theta_l (FBNet eq. 5)."""

    def __init__(self, candidates: list[nn.Module], names: list[str]) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.names = list(names)
        self.theta = nn.Parameter(torch.zeros(len(candidates)))

    @property
    def num_choices(self) -> int:
        return len(self.candidates)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, mode: str) -> torch.Tensor:
        if weights.dim() == 1:
            if mode == "hard":
                index = int(torch.argmax(weights.detach()))
                return straight_through_scale(self.candidates[index](x), weights[index])
            out = None
            for i, op in enumerate(self.candidates):
                y = op(x) * weights[i]
                out = y if out is None else out + y
            return out
        return self._forward_per_sample(x, weights, mode)

    def _forward_per_sample(self, x: torch.Tensor, weights: torch.Tensor, mode: str) -> torch.Tensor:
        if mode == "soft":
            out = None
            for i, op in enumerate(self.candidates):
                y = op(x) * weights[:, i].view(-1, 1, 1, 1)
                out = y if out is None else out + y
            return out
        index = weights.detach().argmax(dim=1)
        rows_list, outs = [], []
        for i in torch.unique(index).tolist():
            rows = torch.nonzero(index == i).flatten()
            y = self.candidates[i](x.index_select(0, rows))
            # forward value 1: per-sample straight-through weights
            outs.append(y * weights.index_select(0, rows)[:, i].view(-1, 1, 1, 1))
            rows_list.append(rows)
        order = torch.argsort(torch.cat(rows_list))
        return torch.cat(outs).index_select(0, order)


class Supernet(nn.Module):
    """The whole network: fixed blocks built as in :class:`FBNetModel`, MixedOps at searchable layers."""

    def __init__(self, space: LayerwiseSpace, num_classes: int, mode: str = "hard", noise: str = "batch") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if noise not in NOISE:
            raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
        self.space = space
        self.num_classes = num_classes
        self.mode = mode
        self.noise = noise
        base_blocks = space.to_spec([0] * space.num_layers).expand()
        per_layer = [[p.block for p in space.blocks_of(dim)] for dim in space.dim_names]
        layers: list[nn.Module] = []
        self.search_positions: list[int] = []
        li = 0
        for block in base_blocks:
            if li < space.num_layers and per_layer[li][0].position == block.position:
                names = [c.name for c in space.layers[li].candidates]
                layers.append(MixedOp([build_block(b, space.basic_args) for b in per_layer[li]], names))
                self.search_positions.append(block.position)
                li += 1
            else:
                layers.append(build_block(block, space.basic_args))
        self.features = nn.ModuleList(layers)
        self.head = ClassifierHead(base_blocks[-1].out_channels, num_classes, float(space.head.get("dropout", 0.0)))
        init_weights(self)

    # ---- parameters --------------------------------------------------------------------------------
    @property
    def mixed_ops(self) -> list[MixedOp]:
        return [m for m in self.features if isinstance(m, MixedOp)]

    def arch_parameters(self) -> list[nn.Parameter]:
        """theta_l of every searchable layer (optimized with Adam on the theta split)."""
        return [m.theta for m in self.mixed_ops]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except theta (optimized with SGD on the weight split)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def probabilities(self) -> list[torch.Tensor]:
        """P_theta per layer (eq. 4), detached."""
        return [torch.softmax(t.detach(), dim=-1) for t in self.arch_parameters()]

    def argmax_choices(self) -> list[int]:
        return [int(torch.argmax(t.detach())) for t in self.arch_parameters()]

    # ---- sampling ----------------------------------------------------------------------------------
    def arch_weights(self, tau: float, generator: torch.Generator, batch_size: int | None = None,
                     hard: bool | None = None) -> ArchSample:
        """Gumbel-softmax weights m_l for every layer (eq. 8) with noise drawn from ``generator``.

        Noise is per batch unless the supernet's ``noise`` is ``sample`` (then ``batch_size`` rows).
        Gradients reach theta only when grad mode is on (the weight step draws under ``no_grad``).
        """
        hard = self.mode == "hard" if hard is None else hard
        weights = []
        for theta in self.arch_parameters():
            shape = (batch_size, theta.numel()) if self.noise == "sample" and batch_size else (theta.numel(),)
            g = gumbel_noise(shape, generator).to(theta.device)
            weights.append(gumbel_softmax(theta, tau, g, hard=hard))
        return ArchSample(weights, float(tau), hard)

    def fixed_weights(self, choices: list[int]) -> ArchSample:
        """One-hot weights for ``choices`` (evaluation of one child inside the supernet)."""
        weights = []
        for theta, c in zip(self.arch_parameters(), choices, strict=True):
            w = torch.zeros_like(theta.detach())
            w[int(c)] = 1.0
            weights.append(w)
        return ArchSample(weights, 0.0, True)

    # ---- forward -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, sample: ArchSample, mode: str | None = None) -> torch.Tensor:
        mode = mode or self.mode
        li = 0
        for layer in self.features:
            if isinstance(layer, MixedOp):
                x = layer(x, sample.weights[li], mode)
                li += 1
            else:
                x = layer(x)
        return self.head(x)

    # ---- children ----------------------------------------------------------------------------------
    def child_state_dict(self, choices: list[int]) -> dict[str, torch.Tensor]:
        """State dict of ``FBNetModel(space.to_spec(choices))`` holding this supernet's weights."""
        out: dict[str, torch.Tensor] = {}
        li = 0
        for pos, layer in enumerate(self.features):
            module = layer
            if isinstance(layer, MixedOp):
                module = layer.candidates[int(choices[li])]
                li += 1
            for k, v in module.state_dict().items():
                out[f"features.{pos}.{k}"] = v.clone()
        for k, v in self.head.state_dict().items():
            out[f"head.{k}"] = v.clone()
        return out

    def export_child(self, choices: list[int]) -> FBNetModel:
        """The child network of ``choices`` with the supernet's trained weights copied in."""
        child = FBNetModel(self.space.to_spec(choices), self.num_classes)
        child.load_state_dict(self.child_state_dict(choices))
        return child
