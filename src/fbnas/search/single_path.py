"""FP-NAS's sampled single-path supernet (seed 002, section 3.1): every step runs only the sampled children, so a
search step needs the memory of one model, not of every candidate.

Each network position keeps its tensors once, at the largest shape any option of the position needs; a child's
block uses the leading slice of every tensor (channels and expansion share one max-width weight, FBNetV2's
channel sharing done by slicing instead of masking). What is *not* shared: depthwise convs per kernel size
(``dw`` tensors per ``k``), and split-attention convs and attention per (radix, kernel) (``sa`` tensors), so
split options have their own weights. The 1x1 expansion / projection, BN and SE tensors are shared by every
option of the position. The child's block runs as the registered op itself (:func:`torch.func.functional_call` on
a template built on the meta device, with the sliced tensors), so the supernet computes exactly what
:meth:`SinglePathSupernet.export_child` (the plain child network holding the same slices) computes; BN running
statistics are updated in place in the shared slices.

The architecture distribution P(A | alpha) (:class:`fbnas.search.distribution.ArchDistribution`) lives in the
supernet, so the checkpoint of the weights holds it too.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from fbnas.arch.spec import Block
from fbnas.nn.model import ClassifierHead, FBNetModel, build_block, init_weights
from fbnas.search.distribution import ArchDistribution
from fbnas.search.protocols import ArchSample
from fbnas.space.base import DimSpace


def storage_key(name: str, kwargs: dict[str, Any]) -> str:
    """Where a child tensor lives in its position's bank: depthwise convs per kernel, split attention per (radix,
    kernel), everything else shared by the position's options."""
    if name.startswith("dw."):
        return f"k{kwargs.get('k')}.{name}"
    if name.startswith("sa."):
        return f"r{kwargs.get('radix')}.k{kwargs.get('k')}.{name}"
    return name


def leading_slice(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The first ``shape[i]`` entries of every axis of ``t`` (a view)."""
    if not shape:
        return t
    return t[tuple(slice(0, n) for n in shape)]


def _structure(block: Block) -> str:
    """The options of a block that change its tensors' names (all but its widths and expansion)."""
    return json.dumps([block.op, block.stride, {k: v for k, v in sorted(block.kwargs.items()) if k != "e"}])


class PositionBank(nn.Module):
    """The max-shape tensors of one network position (parameters and buffers, named by storage key)."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict[str, str] = {}  # storage key -> attribute name

    def add(self, key: str, tensor: torch.Tensor, parameter: bool) -> None:
        attr = key.replace(".", "__")
        self.params[key] = attr
        if parameter:
            self.register_parameter(attr, nn.Parameter(tensor.detach().clone()))
        else:
            self.register_buffer(attr, tensor.detach().clone())

    def get(self, key: str) -> torch.Tensor:
        return getattr(self, self.params[key])


def _max_blocks(term) -> list[Block]:
    """Per structure of the term's options, the block at the largest input width, output width and expansion."""
    widest: dict[str, Block] = {}
    for placed in term.blocks.values():
        b = placed.block
        w = widest.setdefault(_structure(b), b)
        kwargs = dict(w.kwargs)
        if "e" in kwargs:
            kwargs["e"] = max(kwargs["e"], b.kwargs["e"])
        widest[_structure(b)] = Block(w.op, max(w.in_channels, b.in_channels), max(w.out_channels, b.out_channels),
                                      w.stride, kwargs, w.stage, w.index, w.position)
    return list(widest.values())


class SinglePathSupernet(nn.Module):
    """The positions of ``space``'s networks at their largest shapes, P(A | alpha), and the classifier."""

    def __init__(self, space: DimSpace, num_classes: int) -> None:
        super().__init__()
        self.space, self.num_classes = space, num_classes
        index = {n: i for i, n in enumerate(space.dim_names)}
        self.dist = ArchDistribution(space.num_choices(), [[index[n] for n in g] for g in space.groups().values()])
        terms = space.cost_terms(num_classes)
        base = space.build(space.default_sample()).arch
        assert base is not None
        self.basic_args = dict(base.basic_args)
        if terms[-1].dims:
            raise ValueError(f"space {space.name}: the classifier's input width must not be searched")
        self.banks = nn.ModuleList(self._bank(t) for t in terms[:-1])
        last = terms[-1].blocks[()]
        self.head = ClassifierHead(last.channels, num_classes, float(base.head.get("dropout", 0.0)))
        init_weights(self.head)
        self._templates: dict[str, tuple[nn.Module, list[tuple[str, str, tuple[int, ...]]]]] = {}

    def _bank(self, term) -> PositionBank:
        bank = PositionBank()
        shapes: dict[str, tuple[int, ...]] = {}
        for block in _max_blocks(term):
            module = build_block(block, self.basic_args)
            init_weights(module)
            tensors = [(n, t, True) for n, t in module.named_parameters()] + \
                      [(n, t, False) for n, t in module.named_buffers()]
            for name, t, is_param in tensors:
                key = storage_key(name, block.kwargs)
                if key in shapes:
                    if shapes[key] != tuple(t.shape):
                        raise ValueError(f"position {block.position}: {key} has shapes {shapes[key]} and "
                                         f"{tuple(t.shape)}")
                    continue
                shapes[key] = tuple(t.shape)
                bank.add(key, t, is_param)
        return bank

    # ---- the Supernet protocol ----------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return self.dist.active_parameters()

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.dist.parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def probabilities(self) -> list[torch.Tensor]:
        return self.dist.marginals()

    def argmax_choices(self) -> list[int]:
        return self.dist.most_probable()

    def arch_weights(self, tau: float, generator: torch.Generator, batch_size: int | None = None,
                     hard: bool | None = None) -> ArchSample:
        """One architecture drawn from P(A | alpha), as one-hot weights."""
        return self.fixed_weights(self.dist.sample(1, generator)[0])

    def fixed_weights(self, choices: list[int]) -> ArchSample:
        weights = []
        for k, c in zip(self.space.num_choices(), choices, strict=True):
            w = torch.zeros(k)
            w[int(c)] = 1.0
            weights.append(w)
        return ArchSample(weights, 0.0, True)

    # ---- forward --------------------------------------------------------------------------------------
    def child_blocks(self, choices: list[int]) -> list[Block]:
        arch = self.space.build(self.space.from_indices(choices)).arch
        assert arch is not None
        return arch.expand()

    def _template(self, block: Block) -> tuple[nn.Module, list[tuple[str, str, tuple[int, ...]]]]:
        """The block built on the meta device, and (tensor name, storage key, shape) of each of its tensors."""
        key = json.dumps([block.position, block.op, block.in_channels, block.out_channels, block.stride,
                          sorted(block.kwargs.items())])
        if key not in self._templates:
            with torch.device("meta"):
                module = build_block(block, self.basic_args)
            plan = [(n, storage_key(n, block.kwargs), tuple(t.shape))
                    for n, t in list(module.named_parameters()) + list(module.named_buffers())]
            self._templates[key] = (module, plan)
        return self._templates[key]

    def run_block(self, block: Block, x: torch.Tensor) -> torch.Tensor:
        module, plan = self._template(block)
        module.train(self.training)
        bank: PositionBank = self.banks[block.position]  # type: ignore[assignment]
        tensors = {name: leading_slice(bank.get(key), shape) for name, key, shape in plan}
        return functional_call(module, tensors, (x,))

    def run(self, x: torch.Tensor, choices: list[int]) -> torch.Tensor:
        """The child of ``choices`` on ``x`` (only its blocks run)."""
        for block in self.child_blocks(choices):
            x = self.run_block(block, x)
        return self.head(x)

    def forward(self, x: torch.Tensor, sample: ArchSample) -> torch.Tensor:
        return self.run(x, sample.choices())

    # ---- children --------------------------------------------------------------------------------------
    @torch.no_grad()
    def export_child(self, choices: list[int]) -> FBNetModel:
        """The child network of ``choices`` holding the supernet's slices: what the supernet computes for it."""
        arch = self.space.build(self.space.from_indices(choices)).arch
        assert arch is not None
        child = FBNetModel(arch, self.num_classes)
        for block, module in zip(arch.expand(), child.features, strict=True):
            bank: PositionBank = self.banks[block.position]  # type: ignore[assignment]
            for name, t in list(module.named_parameters()) + list(module.named_buffers()):
                t.copy_(leading_slice(bank.get(storage_key(name, block.kwargs)), tuple(t.shape)))
        child.head.load_state_dict(self.head.state_dict())
        return child
