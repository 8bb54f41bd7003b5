"""Exact analytic MACs and params of an arch spec at any input size, per block, without a forward pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fbnas.arch.spec import ArchSpec, Block
from fbnas.cost.formulas import ConvShape, pooled, total
from fbnas.cost.placement import Placed, place
from fbnas.nn.ops import resolve_op


@dataclass
class BlockCost:
    name: str
    op: str
    stage: int
    in_channels: int
    out_channels: int
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    macs: int
    params: int  # conv/linear weights (papers' convention)
    params_total: int  # all trainable parameters, BN and biases included
    pooled: int = 0  # elements entering the block's global average pools (SE, pooling heads)


@dataclass
class CostReport:
    input_size: int
    num_classes: int
    blocks: list[BlockCost] = field(default_factory=list)
    head_macs: int = 0
    head_params: int = 0
    head_params_total: int = 0
    head_pooled: int = 0  # the classifier's global pool: last channels x last map size

    @property
    def pooled(self) -> int:
        """Elements entering every global average pool: what mobile-vision's published MACs add to ours."""
        return sum(b.pooled for b in self.blocks) + self.head_pooled

    @property
    def macs(self) -> int:
        return sum(b.macs for b in self.blocks) + self.head_macs

    @property
    def params(self) -> int:
        """Conv and linear weights: the convention of the FBNet papers and mobile-vision's model_info."""
        return sum(b.params for b in self.blocks) + self.head_params

    @property
    def params_total(self) -> int:
        """All trainable parameters (BN affine and biases too): equals sum(p.numel()) of the model."""
        return sum(b.params_total for b in self.blocks) + self.head_params_total

    def per_stage(self) -> list[dict]:
        stages: dict[int, dict] = {}
        for b in self.blocks:
            s = stages.setdefault(b.stage, {"stage": b.stage, "blocks": 0, "macs": 0, "params": 0,
                                            "params_total": 0, "out_channels": b.out_channels,
                                            "out_hw": b.out_hw})
            s["blocks"] += 1
            s["macs"] += b.macs
            s["params"] += b.params
            s["params_total"] += b.params_total
            s["out_channels"], s["out_hw"] = b.out_channels, b.out_hw
        rows = list(stages.values())
        rows.append({"stage": "head", "blocks": 1, "macs": self.head_macs, "params": self.head_params,
                     "params_total": self.head_params_total, "out_channels": self.num_classes,
                     "out_hw": (1, 1)})
        return rows

    def to_dict(self) -> dict:
        return {"input_size": self.input_size, "num_classes": self.num_classes, "macs": self.macs,
                "params": self.params, "params_total": self.params_total, "pooled": self.pooled,
                "stages": self.per_stage(),
                "blocks": [asdict(b) for b in self.blocks]}


def block_shapes(block: Block, basic_args: dict, h: int, w: int) -> tuple[list[ConvShape], int, int]:
    family, params = resolve_op(block.op, block.kwargs, basic_args)
    return family.shapes(block.in_channels, block.out_channels, block.stride, h, w, params)


def placed_shapes(p: Placed) -> list[ConvShape]:
    """The conv / linear layers of a placed block (the classifier: one linear layer on the pooled map)."""
    if p.block is None:
        return [ConvShape(p.channels, p.num_classes, 1, 1, 1, 1, bias=p.bias, label="classifier")]
    return block_shapes(p.block, p.basic_args, p.h, p.w)[0]


def placed_cost(p: Placed) -> tuple[int, int, int]:
    """(MACs, weight params, all params) of a placed block."""
    macs, params, params_total = total(placed_shapes(p))
    return int(macs), int(params), int(params_total)


def count(spec: ArchSpec, input_size: int | None = None, num_classes: int = 1000) -> CostReport:
    """MACs (multiply-adds of conv and linear layers) and params of ``spec`` built for ``num_classes``."""
    placed = place(spec, num_classes, input_size)
    report = CostReport(placed[0].h, num_classes)
    for p in placed[:-1]:
        b = p.block
        assert b is not None
        shapes = placed_shapes(p)
        macs, params, params_total = total(shapes)
        report.blocks.append(BlockCost(b.name, b.op, b.stage, b.in_channels, b.out_channels, b.stride,
                                       (p.h, p.w), (p.out_h, p.out_w), int(macs), int(params), int(params_total),
                                       int(pooled(shapes))))
    head = placed[-1]
    report.head_macs, report.head_params, report.head_params_total = placed_cost(head)
    report.head_pooled = int(head.channels * head.h * head.w)
    return report
