"""Where every block of a network sits: its input size, and the classifier at the end.

A :class:`Placed` block is what both cost models need: the analytic counter (MACs/params of the block at
its input size) and the latency table (the block's signature at that input). :func:`place` walks a spec
once; spaces use it to tell which block each option of each dimension puts where (``Space.cost_terms``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fbnas.arch.spec import ArchSpec, Block


@dataclass(frozen=True)
class Placed:
    """A block at its input size ``h x w``; ``block is None`` marks the classifier (pool + linear)."""

    block: Block | None
    basic_args: dict[str, Any]
    h: int
    w: int
    out_h: int
    out_w: int
    channels: int = 0  # classifier: input channels
    num_classes: int = 0  # classifier: outputs
    bias: bool = True  # classifier: whether its linear layer has a bias (the spec's head.bias)
    image: tuple[int, int, int] = (0, 0, 0)  # the network's input (channels, height, width)

    @property
    def is_classifier(self) -> bool:
        return self.block is None

    @property
    def name(self) -> str:
        return "classifier" if self.block is None else ("stem" if self.block.position == 0 else self.block.name)


def place(spec: ArchSpec, num_classes: int = 1000, input_size: int | None = None) -> list[Placed]:
    """Every block of ``spec`` with its input size (at ``input_size``, default the spec's), then the classifier."""
    from fbnas.errors import SpecError
    from fbnas.nn.ops import resolve_op

    size = spec.input_size if input_size is None else int(input_size)
    h = w = size
    out: list[Placed] = []
    blocks = spec.expand()
    for b in blocks:
        family, params = resolve_op(b.op, b.kwargs, spec.basic_args)
        _, ho, wo = family.shapes(b.in_channels, b.out_channels, b.stride, h, w, params)
        if ho < 1 or wo < 1:
            raise SpecError(f"input size {size} is too small: {b.name} ({b.op}) gets a {h}x{w} input")
        out.append(Placed(b, spec.basic_args, h, w, ho, wo, image=(spec.in_channels, size, size)))
        h, w = ho, wo
    out.append(Placed(None, spec.basic_args, h, w, 1, 1, channels=blocks[-1].out_channels, num_classes=num_classes,
                      bias=bool(spec.head.get("bias", True)), image=(spec.in_channels, size, size)))
    return out
