"""The shipped 28x28 space: FBNetV1's 9 candidates per layer, fmnist_small's macro-architecture, a valid supernet."""

from __future__ import annotations

import torch
import yaml

import fbnas
from fbnas.search.supernet import Supernet
from fbnas.space import load_space, space_names


def test_fbnet_fmnist_has_the_fbnet_v1_candidates_and_28px_stages():
    assert {"fbnet_v1", "fbnet_fmnist"} <= set(space_names())
    small, v1 = load_space("fbnet_fmnist"), load_space("fbnet_v1")
    assert small.num_layers == 8 and v1.num_layers == 22
    assert [c.name for c in small.layers[0].candidates] == [c.name for c in v1.layers[0].candidates]
    assert (small.input_size, small.in_channels) == (28, 1)
    # resolutions 14 / 7 / 4 with 24 / 48 / 96 channels, as configs/fmnist_small.yaml
    assert [(layer.out_channels, layer.stride) for layer in small.layers] == [
        (24, 1), (24, 1), (48, 2), (48, 1), (48, 1), (96, 2), (96, 1), (96, 1)]


def test_fbnet_fmnist_children_build_and_the_supernet_runs():
    space = load_space("fbnet_fmnist")
    cheap, big = [8] * space.num_layers, [7] * space.num_layers  # skip everywhere / k5_e6 everywhere
    macs = [fbnas.profile(space.to_spec(c), num_classes=10).macs for c in (cheap, big)]
    assert 0 < macs[0] < macs[1]
    model = fbnas.create_model(space.to_spec(big), num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    net = Supernet(space, num_classes=10, mode="soft")
    sample = net.arch_weights(tau=5.0, generator=torch.Generator().manual_seed(0))
    assert net(torch.randn(2, 1, 28, 28), sample).shape == (2, 10)


def test_shipped_dnas_config_searches_this_space():
    with open("configs/dnas_fashion_mnist.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    assert cfg["space"]["name"] == "fbnet_fmnist" and cfg["space"]["input_size"] == 28
