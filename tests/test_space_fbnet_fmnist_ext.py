"""fbnet_fmnist_ext: the FBNetV1 candidates plus Ghost and Fused-MBConv ones; children and the supernet run, every
candidate is counted exactly and has its own LUT signature."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import fbnas
from fbnas.lut.signature import spec_entries
from fbnas.search.supernet import Supernet
from fbnas.space import load_space


def test_ext_space_extends_fbnet_fmnist():
    ext, base = load_space("fbnet_fmnist_ext"), load_space("fbnet_fmnist")
    assert ext.num_layers == base.num_layers == 8
    names = [c.name for c in ext.layers[0].candidates]
    assert names[:9] == [c.name for c in base.layers[0].candidates]
    ops = {c.op for c in ext.layers[0].candidates[9:]}
    assert ops == {"ghost_bneck", "fused_mbconv"}
    assert [(layer.out_channels, layer.stride) for layer in ext.layers] == [
        (layer.out_channels, layer.stride) for layer in base.layers]


def test_every_candidate_builds_counts_exactly_and_has_a_signature():
    space = load_space("fbnet_fmnist_ext")
    keys = set()
    for ci in range(9, len(space.layers[0].candidates)):
        spec = space.to_spec([ci] * space.num_layers)
        model = fbnas.create_model(spec, num_classes=10).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)
        report = fbnas.profile(spec, num_classes=10)
        assert counter.get_total_flops() == 2 * report.macs
        assert report.params_total == sum(p.numel() for p in model.parameters())
        entries = spec_entries(spec, num_classes=10)
        assert entries[1].family in ("ghost_bneck", "fused_mbconv")
        keys |= {e.key for e in entries[1:-1]}
    assert len(keys) >= 5 * 3  # distinct entries per candidate at each resolution


def test_ext_supernet_runs_soft_and_hard():
    space = load_space("fbnet_fmnist_ext")
    for mode in ("soft", "hard"):
        net = Supernet(space, num_classes=10, mode=mode)
        sample = net.arch_weights(tau=5.0, generator=torch.Generator().manual_seed(0))
        y = net(torch.randn(4, 1, 28, 28), sample)
        assert y.shape == (4, 10)
        y.sum().backward()
