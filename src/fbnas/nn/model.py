"""Build an nn.Module from an arch spec. Knows nothing of search; every spec builds the same way."""

from __future__ import annotations

import torch
from torch import nn

from fbnas.arch.spec import ArchSpec, Block
from fbnas.errors import SpecError
from fbnas.nn.ops import resolve_op


def build_block(block: Block, basic_args: dict) -> nn.Module:
    family, params = resolve_op(block.op, block.kwargs, basic_args)
    try:
        return family.build(block.in_channels, block.out_channels, block.stride, params)
    except SpecError as e:
        raise SpecError(f"stage {block.stage} block {block.index} ({block.op}): {e}") from None


class ClassifierHead(nn.Module):
    """Global average pool, dropout, linear classifier (mobile-vision's ClsConvHead; ``bias=False``: ESPNet-C's
    bias-free 1x1 classifier, which commutes with the pool)."""

    def __init__(self, channels: int, num_classes: int, dropout: float, bias: bool = True) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def init_weights(module: nn.Module) -> None:
    """He-normal convs, small-normal linear layers, zero biases; shared by models and supernets so a child and
    its supernet start alike."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class FBNetModel(nn.Module):
    """Feature blocks from the spec, then a classifier head.

    Blocks with a true ``takes_image`` attribute (ESPNet's input reinforcement) are called as
    ``block(x, image)`` with the network's input; all others as ``block(x)``.
    """

    def __init__(self, spec: ArchSpec, num_classes: int = 1000) -> None:
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
        blocks = spec.expand()
        self.features = nn.Sequential(*[build_block(b, spec.basic_args) for b in blocks])
        self.takes_image = [bool(getattr(m, "takes_image", False)) for m in self.features]
        self.head = ClassifierHead(blocks[-1].out_channels, num_classes, float(spec.head.get("dropout", 0.0)),
                                   bias=bool(spec.head.get("bias", True)))
        # zero_last_bn_gamma was applied at construction and survives (BN init is not touched here)
        init_weights(self)
        if float(spec.head.get("drop_path", 0.0)) > 0:
            self.set_drop_path(float(spec.head["drop_path"]))

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth rising linearly with depth to ``rate`` on residual blocks."""
        blocks = [m for m in self.features if hasattr(m, "drop_path_rate")]
        for i, m in enumerate(blocks):
            m.drop_path_rate = rate * (i + 1) / max(1, len(blocks))

    def set_dropout(self, rate: float) -> None:
        self.head.dropout = nn.Dropout(rate) if rate > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.takes_image):
            return self.features(x)
        image = x
        for block, takes_image in zip(self.features, self.takes_image, strict=True):
            x = block(x, image) if takes_image else block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def build_model(spec: ArchSpec, num_classes: int = 1000) -> FBNetModel:
    return FBNetModel(spec, num_classes)
