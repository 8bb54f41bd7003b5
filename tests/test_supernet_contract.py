"""Contract of the supernets over every registered space: at one-hot architecture weights the supernet computes
what its exported child computes (the child holds the supernet's weights). Layer-wise spaces have the Gumbel
supernet, masking spaces the masked one, FP-NAS spaces the sampled single-path one. The negative controls show the
comparison can fail: another child differs, and a masked block with the wrong residual rule differs."""

from __future__ import annotations

import random

import pytest
import torch

from fbnas.search.masking import DMaskingSupernet, export_child, subsample
from fbnas.search.protocols import ArchSample
from fbnas.search.protocols import Supernet as SupernetProtocol
from fbnas.search.single_path import SinglePathSupernet
from fbnas.search.supernet import Supernet
from fbnas.space import FPNasSpace, LayerwiseSpace, MaskingSpace, load_space, space_names


def _calibrate(net: torch.nn.Module, space, sample) -> None:
    """BN affine weights that are not the identity, running statistics of the real activations (one forward
    in train mode), and a classifier whose logits are O(1): so that every layer shows in the output."""
    g = torch.Generator().manual_seed(0)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.weight.data.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
        m.bias.data.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        m.momentum = 1.0
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, 0.0, 1.0)
    x = torch.randn(8, space.in_channels, space.input_size, space.input_size, generator=g)
    net.train()
    with torch.no_grad():
        net(x, sample)
    for m in bns:
        m.momentum = 0.1
    net.eval()


def _space(name: str):
    space = load_space(name)
    if isinstance(space, LayerwiseSpace) and space.input_size > 64:
        space = load_space(name, input_size=32, in_channels=1, width_multiplier=0.25)
    return space


def make_supernet(space, mode: str = "soft"):
    """A supernet whose BN statistics come from a soft (uniform) architecture sample, so every option has them."""
    torch.manual_seed(0)
    if isinstance(space, FPNasSpace):
        net = SinglePathSupernet(space, 10)
    else:
        net = DMaskingSupernet(space, 10) if isinstance(space, MaskingSpace) else Supernet(space, 10, mode=mode)
    uniform = [torch.full((k,), 1.0 / k) for k in space.num_choices()]
    _calibrate(net, space, ArchSample(uniform, 1.0, False))
    return net


def supernet_and_child(space, net, choices: list[int]):
    """(supernet output, child output) on one batch at the one-hot weights of ``choices``."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, space.in_channels, space.input_size, space.input_size, generator=g)
    with torch.no_grad():
        if isinstance(space, MaskingSpace):
            child = export_child(net, choices).eval()
            res = space.choices[space.RES].values[choices[space.RES]]
            return net(x, net.fixed_weights(choices)), child(subsample(x, res))
        return net(x, net.fixed_weights(choices)), net.export_child(choices).eval()(x)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max())))


SUPERNET_KINDS = (LayerwiseSpace, MaskingSpace, FPNasSpace)  # weight-sharing searches; StagewiseSpace has none
SUPERNET_SPACES = [n for n in space_names() if isinstance(load_space(n), SUPERNET_KINDS)]


def test_only_stagewise_spaces_go_without_a_supernet():
    left_out = {n: type(load_space(n)).__name__ for n in space_names() if n not in SUPERNET_SPACES}
    assert left_out and set(left_out.values()) == {"StagewiseSpace"}, left_out


@pytest.mark.parametrize("name", SUPERNET_SPACES)
def test_supernet_equals_its_child_at_one_hot_weights(name):
    space = _space(name)
    rng = random.Random(0)
    n = space.num_choices()
    trials = [[0] * len(n), [k - 1 for k in n]] + [[rng.randrange(k) for k in n] for _ in range(2)]
    for mode in ("soft", "hard") if isinstance(space, LayerwiseSpace) else ("soft",):
        net = make_supernet(space, mode)
        assert isinstance(net, SupernetProtocol)  # what the search loop is written against
        for choices in trials:
            got, want = supernet_and_child(space, net, choices)
            assert _close(got, want), (name, choices, mode, float((got - want).abs().max()))


def test_negative_controls_fail():
    fpnas = _space("fbnetv2_fpp_fmnist")
    net = make_supernet(fpnas)
    choices = [k - 1 for k in fpnas.num_choices()]
    got, _ = supernet_and_child(fpnas, net, choices)
    att = fpnas.dim_names.index("s2.att")
    choices[att] = fpnas.dim("s2.att").values.index("sa2")  # sa4 -> sa2: its own weights, another function
    _, other = supernet_and_child(fpnas, net, choices)
    assert not _close(got, other)
    layerwise = _space("fbnet_fmnist")
    net = make_supernet(layerwise)
    got, _ = supernet_and_child(layerwise, net, [3] * layerwise.num_layers)
    _, other = supernet_and_child(layerwise, net, [4] * layerwise.num_layers)
    assert not _close(got, other)
    # a masked stride-1 block between two width dimensions that always adds its input (the rule before the
    # residual followed the child) computes something else than a child whose widths disagree
    masking = _space("fbnetv2_fmnist")
    b0 = masking.blocks[0]
    assert b0.in_group != b0.out_group and b0.stride == 1
    choices = [len(masking.choices[0].values) - 1] + [0] * (len(masking.choices) - 1)
    choices[b0.in_group], choices[b0.out_group] = 1, 2  # 12 -> 16 channels: no residual in the child
    net = make_supernet(masking)
    child = export_child(net, choices).eval()
    x = torch.randn(2, 1, 28, 28)
    masks = net.masks(net.fixed_weights(choices).weights)
    with torch.no_grad():
        assert _close(net.body(x, masks), child.features(x))
        net.blocks[0].residual = "same"
        assert not _close(net.body(x, masks), child.features(x))
