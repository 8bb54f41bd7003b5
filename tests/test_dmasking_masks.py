"""DMaskingNAS mechanics: mask algebra, effective channels, interspersed zero padding, effective-shape cost."""

from __future__ import annotations

import random

import pytest
import torch

from fbnas.cost.counting import count
from fbnas.errors import FbnasError
from fbnas.nn.model import FBNetModel
from fbnas.search.dmasking import DEFAULT_SPACE
from fbnas.search.masking import (
    DMaskingSupernet,
    channel_mask,
    effective_channels,
    intersperse,
    prefix_masks,
    subsample,
    subsample_indices,
)
from fbnas.space.masking import parse_space


def test_prefix_masks_and_mask_algebra():
    ls = prefix_masks([2, 3, 5])
    assert ls.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    # a one-hot g selects exactly l_i
    for i in range(3):
        g = torch.zeros(3)
        g[i] = 1.0
        assert torch.equal(channel_mask(g, [2, 3, 5]), ls[i])
    # M = sum_i g_i l_i: channel j carries the weight of every option wider than j
    g = torch.tensor([0.5, 0.3, 0.2])
    assert torch.allclose(channel_mask(g, [2, 3, 5]), torch.tensor([1.0, 1.0, 0.5, 0.2, 0.2]))
    # eq. 2 == eq. 3: sum_i g_i (b(x) o l_i) == b(x) o M
    y = torch.randn(2, 5, 3, 3)
    lhs = sum(g[i] * y * ls[i].view(1, -1, 1, 1) for i in range(3))
    assert torch.allclose(lhs, y * channel_mask(g, [2, 3, 5]).view(1, -1, 1, 1))


def test_effective_channels_seed_example():
    # seed 000: g = 0.8 on a 16-channel output, 0.2 on 12 channels -> 15.2 effective channels
    assert float(effective_channels(torch.tensor([0.2, 0.8]), [12, 16])) == pytest.approx(15.2)
    g = torch.tensor([0.2, 0.8], requires_grad=True)
    effective_channels(g, [12, 16]).backward()
    assert g.grad.tolist() == [12.0, 16.0]


def test_interspersed_zero_padding_keeps_pixels_aligned():
    # seed 000 example: 8x8 map, 4x4 and 2x2 nearest subsamplings padded back with interspersed zeros
    x = torch.arange(64.0).view(1, 1, 8, 8) + 1
    assert subsample_indices(4, 8).tolist() == [0, 2, 4, 6]
    assert subsample_indices(2, 8).tolist() == [0, 4]
    for size in (4, 2):
        small = subsample(x, size)
        back = intersperse(small, 8)
        nz = back != 0
        # every kept pixel is back exactly where it was sampled; zeros everywhere else (not at the border)
        assert torch.equal(back[nz], x[nz])
        assert int(nz.sum()) == size * size
        step = 8 // size
        assert nz[0, 0, ::step, ::step].all()
        assert not nz[0, 0, 1::step].any() and not nz[0, 0, :, 1::step].any()
    both = (intersperse(subsample(x, 4), 8) != 0) & (intersperse(subsample(x, 2), 8) != 0)
    assert both.nonzero()[:, 2:].tolist() == [[0, 0], [0, 4], [4, 0], [4, 4]]
    # non-integer ratios place pixels at their nearest-neighbour source position
    odd = intersperse(subsample(x, 5), 8)
    idx = subsample_indices(5, 8)
    assert torch.equal(odd[0, 0][idx][:, idx], x[0, 0][idx][:, idx])


def _space():
    return parse_space(DEFAULT_SPACE)


def test_effective_cost_equals_analytic_count_when_one_hot():
    sp = _space()
    net = DMaskingSupernet(sp, 10)
    rng = random.Random(0)
    choices = [[0] * len(sp.choices), sp.max_choices()] + [[rng.randrange(n) for n in sp.num_choices()]
                                                          for _ in range(8)]
    for ch in choices:
        spec = sp.to_spec(ch)
        report = count(spec, num_classes=10)
        w = net.fixed_weights(ch).weights
        assert float(net.effective_cost(w, "macs")) == report.macs, ch
        assert float(net.effective_cost(w, "params")) == report.params, ch
        assert spec.input_size == sp.choices[sp.RES].values[ch[sp.RES]]


def test_effective_cost_is_differentiable_and_monotone():
    sp = _space()
    net = DMaskingSupernet(sp, 10)
    sample = net.arch_weights(1.0, torch.Generator().manual_seed(0))
    cost = net.effective_cost(sample.weights, "macs")
    cost.backward()
    for t in net.arch_parameters():
        assert t.grad is not None and torch.isfinite(t.grad).all()
    # moving weight to a wider option of any channel group raises the cost
    lo = net.effective_cost(net.fixed_weights([0] * len(sp.choices)).weights)
    hi = net.effective_cost(net.fixed_weights(sp.max_choices()).weights)
    assert float(lo) < float(cost.detach()) < float(hi)


def test_supernet_forward_and_child_builds():
    sp = _space()
    net = DMaskingSupernet(sp, 10)
    x = torch.randn(4, 1, 28, 28)
    sample = net.arch_weights(2.0, torch.Generator().manual_seed(1))
    logits = net(x, sample)
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(t.grad is not None for t in net.arch_parameters())
    child = FBNetModel(sp.to_spec([min(1, n - 1) for n in sp.num_choices()]), 10)
    res = sp.choices[sp.RES].values[1]
    assert child(torch.randn(2, 1, res, res)).shape == (2, 10)


def test_fractional_expansion_reproduces_hidden_width():
    sp = _space()
    ch = sp.max_choices()
    ch[sp.stage_group(2)] = 0  # narrowest stage-2 width (24), widest hidden (160): e = 6.67
    spec = sp.to_spec(ch)
    blocks = spec.expand()
    mids = [sp.choices[b.e_group].values[ch[b.e_group]] for b in sp.blocks]
    from fbnas.nn.blocks import ir_channels
    from fbnas.nn.ops import resolve_op

    for blk, mid in zip(blocks[1:-1], mids, strict=True):
        _, p = resolve_op(blk.op, blk.kwargs, spec.basic_args)
        assert ir_channels(blk.in_channels, p)[0] == mid
    assert any(not float(b.kwargs["e"]).is_integer() for b in blocks[1:-1])


@pytest.mark.parametrize("change, field", [
    ({"resolutions": [24, 20]}, "space.resolutions"),
    ({"stem": {"c": [8, 10], "s": 2}}, "space.stem.c"),
    ({"stages": [{"c": [8], "s": 3}]}, "space.stages[0].s"),
    ({"stages": [{"c": [8], "k": [3, 5], "n": 1}]}, "space.stages[0].k"),
    ({"colour": 1}, "space.colour"),
])
def test_space_errors_name_the_field(change, field):
    with pytest.raises(FbnasError, match=field.replace(".", r"\.").replace("[", r"\[")) as e:
        parse_space({**DEFAULT_SPACE, **change}, "c.yaml")
    assert "\n" not in str(e.value)
