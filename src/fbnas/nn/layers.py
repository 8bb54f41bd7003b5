"""Small building layers shared by all ops: conv-BN-act, BN-act, SE, channel shuffle, drop path."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "hswish": nn.Hardswish,
    "relu6": nn.ReLU6,
    "swish": nn.SiLU,
    "prelu": nn.PReLU,  # one learned slope per channel (ESPNet); counted in params_total
    "identity": nn.Identity,
}
GATES: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "hsigmoid": nn.Hardsigmoid}


def make_act(name: str | None, channels: int | None = None) -> nn.Module:
    """The activation ``name``; PReLU needs the number of ``channels`` it has slopes for."""
    if name is None:
        return nn.Identity()
    cls = ACTIVATIONS[name]
    if cls is nn.PReLU:
        if channels is None:
            raise ValueError("a PReLU activation needs its number of channels")
        return nn.PReLU(channels)
    return cls(inplace=True) if cls in (nn.ReLU, nn.Hardswish, nn.ReLU6, nn.SiLU) else cls()


def has_params(act: str | None) -> bool:
    """Whether activation ``act`` has trainable parameters (one per channel)."""
    return act == "prelu"


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class ConvBNAct(nn.Sequential):
    """Conv2d (+BN) (+activation), the unit every op is made of (BN directly after the conv, so it folds)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
                 padding: int | tuple[int, int] | None = None, groups: int = 1, bias: bool = False,
                 bn: bool = True, act: str | None = "relu", zero_gamma: bool = False, dilation: int = 1) -> None:
        kh, kw = _pair(kernel)
        padding = (dilation * (kh // 2), dilation * (kw // 2)) if padding is None else padding
        layers: dict[str, nn.Module] = {
            "conv": nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=bias)}
        if bn:
            norm = nn.BatchNorm2d(cout)
            if zero_gamma:
                nn.init.zeros_(norm.weight)
            layers["bn"] = norm
        if act is not None:
            layers["act"] = make_act(act, cout)
        super().__init__(OrderedDict(layers))


class BNAct(nn.Sequential):
    """BN (+activation) without a conv: ESPNet's BR after a concatenation."""

    def __init__(self, channels: int, act: str | None = "prelu") -> None:
        layers: dict[str, nn.Module] = {"bn": nn.BatchNorm2d(channels)}
        if act is not None:
            layers["act"] = make_act(act, channels)
        super().__init__(OrderedDict(layers))


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle after a grouped 1x1 conv."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class SqueezeExcite(nn.Module):
    """avgpool -> 1x1 conv -> act -> 1x1 conv -> gate (sigmoid or hard-sigmoid) -> scale."""

    def __init__(self, channels: int, mid: int, act: str = "relu", gate: str = "sigmoid") -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = make_act(act, mid)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = GATES[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch (per-sample)."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep
