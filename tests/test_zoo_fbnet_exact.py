"""The FBNet zoo computes mobile-vision's function, not only its counts (issue 20, item 5).

Each test pins one former difference: zero_last_bn_gamma only where a residual is added, the conv bias of the
stems and of the FBNetV1 conv_k1 head, the channel shuffle of e = 1 ``_g2`` blocks, and untrained logits that
are not all zero. Each has a control showing it can fail.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fbnas
from fbnas.arch.zoo import get_spec, zoo_names
from fbnas.nn.blocks import IRFBlock
from fbnas.nn.layers import ChannelShuffle
from fbnas.nn.ops import resolve_op

FBNET = zoo_names("fbnet")


def zeroed_gammas(model: nn.Module) -> tuple[int, int]:
    """(zeroed BN gammas inside residual blocks, zeroed BN gammas anywhere else)."""
    inside = outside = 0
    for m in model.modules():
        bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)] if isinstance(m, IRFBlock) else []
        zero = sum(int(bool((b.weight == 0).all())) for b in bns)
        if zero:
            inside += zero if m.residual else 0
            outside += 0 if m.residual else zero
    total = sum(int(bool((b.weight == 0).all())) for b in model.modules() if isinstance(b, nn.BatchNorm2d))
    return inside, total - inside


def test_zero_gamma_only_where_a_residual_is_added():
    for name in FBNET:
        inside, outside = zeroed_gammas(fbnas.create_model(name))
        assert outside == 0, name
    # mobile-vision zeroes 23 of fbnet_v3_a's 87 BN gammas (29 when non-residual blocks were zeroed too)
    model = fbnas.create_model("fbnet_v3_a")
    assert zeroed_gammas(model) == (23, 0)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 87
    # control: a non-residual block asked to zero its gamma keeps it (and the counter sees a zeroed one)
    _, p = resolve_op("ir_k3", {"e": 4, "zero_last_bn_gamma": True}, {"width_divisor": 8})
    assert not bool((IRFBlock(16, 24, 1, p).pwl.bn.weight == 0).all())
    assert bool((IRFBlock(16, 16, 1, p).pwl.bn.weight == 0).all())


@pytest.mark.parametrize("name", FBNET)
def test_stem_and_v1_head_convs_have_a_bias(name):
    model = fbnas.create_model(name)
    stem = model.features[0].conv
    assert stem.bias is not None and stem.bias.numel() == stem.out_channels
    spec = get_spec(name)
    last = spec.expand()[-1]
    if last.op == "conv_k1":  # the FBNetV1 head
        assert model.features[-1].conv.bias is not None
    report = fbnas.profile(name)
    assert report.params_total == sum(p.numel() for p in model.parameters())
    # control: the same spec without the bias kwargs builds a stem without bias
    d = spec.to_dict()
    d["stages"][0][0][4].pop("bias")
    assert fbnas.create_model(d).features[0].conv.bias is None


def _reference_e1_g2(block: IRFBlock, x: torch.Tensor, shuffle: bool) -> torch.Tensor:
    """mobile-vision's IRFBlock with e = 1 and pw_groups = 2, written out: shuffle, dw conv+BN+ReLU, pwl conv+BN,
    residual add."""
    def conv_bn(seq, y):
        c = seq.conv
        y = F.conv2d(y, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
        b = seq.bn
        return F.batch_norm(y, b.running_mean, b.running_var, b.weight, b.bias, False, 0.0, b.eps)

    y = x
    if shuffle:
        n, c, h, w = y.shape
        y = y.reshape(n, 2, c // 2, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
    y = F.relu(conv_bn(block.dw, y))
    return x + conv_bn(block.pwl, y)


def test_fbnet_a_e1_g2_blocks_shuffle_channels():
    spec = get_spec("fbnet_a")
    model = fbnas.create_model(spec).eval()
    g2 = [i for i, b in enumerate(spec.expand()) if b.op.endswith("_g2")]
    assert len(g2) == 3
    torch.manual_seed(0)
    for i in g2:
        block = model.features[i]
        assert block.pw is None and isinstance(block.shuffle, ChannelShuffle)
        for bn in block.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.weight.data.uniform_(0.5, 1.5)
                bn.bias.data.normal_()
        x = torch.randn(2, block.dw.conv.in_channels, 14, 14)
        with torch.no_grad():
            y = block(x)
            assert torch.allclose(y, _reference_e1_g2(block, x, shuffle=True), atol=1e-5)
            # control: the block without the shuffle is a different function
            assert not torch.allclose(y, _reference_e1_g2(block, x, shuffle=False), atol=1e-3)


@pytest.mark.parametrize("name", FBNET)
def test_untrained_logits_are_not_all_zero(name):
    torch.manual_seed(0)
    model = fbnas.create_model(name).train()  # BN on batch statistics: a zeroed path gives constant logits
    with torch.no_grad():
        y = model(torch.randn(4, 3, 64, 64))
        assert float(y.std()) > 1e-3 and float((y[0] - y[1]).abs().max()) > 1e-3
        assert bool((model.eval()(torch.randn(2, 3, 64, 64)) != 0).any())


def test_untrained_logits_control():
    """Zeroing the last gamma of every block (the former behaviour) makes the logits of fbnet_v3_a constant."""
    torch.manual_seed(0)
    model = fbnas.create_model("fbnet_v3_a").train()
    for m in model.features:
        if isinstance(m, IRFBlock):
            nn.init.zeros_(m.pwl.bn.weight)
    with torch.no_grad():
        y = model(torch.randn(4, 3, 64, 64))
    assert float(y.std()) == 0.0
