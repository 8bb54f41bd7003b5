"""Fold eval-mode batch norm into the convolution before it: one conv with a bias instead of conv + BN.

A deployed net never updates BN statistics, so ``BN(conv(x))`` is an affine map per output channel and can be
written into the conv's weight and bias. This removes every BN node from the exported graph.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d (with bias) computing ``bn(conv(x))`` with ``bn`` in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
        fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
        weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        fused.weight.copy_(weight.to(conv.weight.dtype))
        fused.bias.copy_(shift.to(conv.weight.dtype))
    return fused


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.num_features == conv.out_channels)


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> tuple[nn.Module, int]:
    """Fold every Conv2d directly followed by a BatchNorm2d inside an ``nn.Sequential`` (so every ConvBNAct).

    Returns the folded model (in eval mode; a deep copy unless ``inplace``) and the number of folded pairs.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        i = 0
        while i + 1 < len(names):
            conv, bn = seq._modules[names[i]], seq._modules[names[i + 1]]
            if _foldable(conv, bn):
                seq._modules[names[i]] = fold_conv_bn(conv, bn)
                del seq._modules[names[i + 1]]
                names.pop(i + 1)
                folded += 1
            i += 1
    return model, folded


def count_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
