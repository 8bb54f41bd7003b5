"""Zoo models against published MACs/params, and analytic counts against torch's FlopCounterMode."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import fbnas
from fbnas.arch.zoo import PUBLISHED, zoo_names


def test_zoo_has_the_16_published_models():
    assert zoo_names() == list(PUBLISHED) and len(PUBLISHED) == 16


@pytest.mark.parametrize("name", zoo_names())
def test_published_macs_and_params_within_1pct(name):
    report = fbnas.profile(name)
    pub_macs, pub_params = PUBLISHED[name]
    assert abs(report.macs / 1e6 / pub_macs - 1) < 0.01
    assert abs(report.params / 1e6 / pub_params - 1) < 0.01


@pytest.mark.parametrize("name", zoo_names())
def test_analytic_counts_match_torch(name):
    spec = fbnas.arch.zoo.get_spec(name)
    model = fbnas.create_model(spec).eval()
    for size in (spec.input_size, 160):
        report = fbnas.profile(spec, input_size=size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.randn(1, 3, size, size))
        assert abs(counter.get_total_flops() / 2 / report.macs - 1) < 0.005
    assert report.params_total == sum(p.numel() for p in model.parameters())
