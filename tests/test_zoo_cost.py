"""FBNet zoo models against mobile-vision's published MACs/params, and analytic counts against torch's
FlopCounterMode (the seed 004 families: test_zoo_families.py)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import fbnas
from fbnas.arch.zoo import PUBLISHED, zoo_names


def test_zoo_has_the_16_fbnet_models():
    assert zoo_names() == list(PUBLISHED) and len(zoo_names("fbnet")) == 16
    for name in zoo_names():
        assert fbnas.arch.zoo.get_spec(name).name == name


@pytest.mark.parametrize("name", zoo_names("fbnet"))
def test_published_macs_and_params_are_ours_under_mobile_visions_convention(name):
    """mobile-vision counts conv/linear weights and adds the elements entering every global pool to the MACs;
    V2/V3 are published as full counts (equal), V1 to 3 decimals (equal to those)."""
    report = fbnas.profile(name)
    pub = PUBLISHED[name]
    assert pub.macs_with_pool and not pub.params_all
    assert round((report.macs + report.pooled) / pub.macs_unit) == round(pub.macs / pub.macs_unit)
    assert round(report.params / pub.params_unit) == round(pub.params / pub.params_unit)
    assert pub.macs_unit == pub.params_unit == (1000 if name in ("fbnet_a", "fbnet_b", "fbnet_c") else 1)


@pytest.mark.parametrize("name", zoo_names("fbnet"))
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
