"""Batch-norm folding: exact per-channel algebra, every ConvBNAct folded, the net's output unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fbnas
from fbnas.export import calibrate_untrained, count_batchnorm, fold_batchnorm, fold_conv_bn
from fbnas.nn.layers import ConvBNAct


def random_bn(channels: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=g))
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) * 3 + 0.1)
    return bn.eval()


@pytest.mark.parametrize("groups,bias,stride", [(1, False, 1), (4, True, 2), (8, False, 1)])
def test_fold_conv_bn_is_exact(groups: int, bias: bool, stride: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride, 1, groups=groups, bias=bias)
    bn = random_bn(16, seed=groups)
    fused = fold_conv_bn(conv, bn)
    assert fused.bias is not None and fused.groups == groups and fused.stride == (stride, stride)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        ref, got = bn(conv(x)), fused(x)
    assert ref.abs().max() > 1
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_fold_replaces_bn_in_conv_bn_act_and_keeps_order() -> None:
    block = nn.Sequential(ConvBNAct(4, 8, 3, act="hswish"), ConvBNAct(8, 8, 1, bn=False, act=None))
    block[0].bn = random_bn(8, seed=3)
    folded, pairs = fold_batchnorm(block)
    assert pairs == 1 and count_batchnorm(folded) == 0 and count_batchnorm(block) == 1  # original untouched
    assert list(folded[0]._modules) == ["conv", "act"]
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), block.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["fbnet_c", "fbnet_v2_f4", "fbnet_v3_b"])
def test_fold_whole_zoo_model(name: str) -> None:
    model = fbnas.create_model(name).eval()
    calibrate_untrained(model, (1, 3, 64, 64), seed=1)
    bns = count_batchnorm(model)
    folded, pairs = fold_batchnorm(model)
    assert pairs == bns > 40 and count_batchnorm(folded) == 0
    convs_with_bias = sum(isinstance(m, nn.Conv2d) and m.bias is not None for m in folded.modules())
    assert convs_with_bias >= pairs
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    assert ref.abs().max() > 0.05
    assert float((got - ref).abs().max()) < 1e-4
    # fewer parameters: BN's 4 vectors per channel become one bias
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in model.parameters())


def test_untrained_calibration_gives_a_nonzero_bounded_output() -> None:
    model = fbnas.create_model("fbnet_v3_a").eval()
    x = torch.randn(2, 3, 64, 64)
    calibrate_untrained(model, (1, 3, 64, 64))
    with torch.no_grad():
        y = model(x)
    assert torch.isfinite(y).all() and 1e-3 < float(y.std()) < 10
