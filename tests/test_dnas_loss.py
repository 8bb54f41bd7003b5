"""The DNAS loss equals the paper's formula (eq. 2 with eq. 9) and its documented variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fbnas.cost.terms import TermCostModel, analytic_cost_model
from fbnas.errors import FbnasError
from fbnas.search.loss import LossConfig, dnas_loss
from fbnas.space import load_space


def _rows(rows: list[list[float]], fixed: float) -> TermCostModel:
    """One single-dimension term per layer (a layer-wise space's latency table)."""
    return TermCostModel("latency", "ms", [((i,), torch.tensor(r)) for i, r in enumerate(rows)], fixed)


def _cost_model() -> TermCostModel:
    return _rows([[1.0, 2.0, 4.0], [3.0, 0.5]], 5.0)


def test_expected_cost_is_eq9():
    cm = _cost_model()
    w = [torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.9, 0.1])]
    want = 5.0 + (0.2 * 1 + 0.3 * 2 + 0.5 * 4) + (0.9 * 3 + 0.1 * 0.5)
    assert math.isclose(float(cm.expected(w)), want, rel_tol=1e-6)
    per_sample = [torch.stack([w[0], torch.tensor([1.0, 0, 0])]), torch.stack([w[1], torch.tensor([0.0, 1])])]
    got = cm.expected(per_sample)
    assert got.shape == (2,)
    assert math.isclose(float(got[1]), 5.0 + 1.0 + 0.5, rel_tol=1e-6)
    assert cm.of_choices([2, 0]) == 5.0 + 4.0 + 3.0


def test_paper_and_reference_forms():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    ce = float(torch.nn.functional.cross_entropy(logits, labels))
    lat = torch.tensor(23.1)
    paper, parts = dnas_loss(logits, labels, lat, LossConfig(form="paper", alpha=0.2, beta=0.6))
    assert math.isclose(float(paper), ce * 0.2 * math.log(23.1) ** 0.6, rel_tol=1e-5)
    assert math.isclose(parts["ce"], ce, rel_tol=1e-6) and math.isclose(parts["cost"], 23.1, rel_tol=1e-6)
    ref, _ = dnas_loss(logits, labels, lat, LossConfig(form="reference", alpha=0.2, beta=0.6))
    assert math.isclose(float(ref), 0.2 * ce * math.log(23.1 ** 0.6), rel_tol=1e-5)
    assert math.isclose(float(ref), 0.2 * 0.6 * ce * math.log(23.1), rel_tol=1e-5)
    assert not math.isclose(float(ref), float(paper), rel_tol=1e-3)
    none, _ = dnas_loss(logits, labels, lat, LossConfig(form="none"))
    assert math.isclose(float(none), ce, rel_tol=1e-6)


def test_target_forms_and_gradient_through_weights():
    logits, labels = torch.zeros(2, 3), torch.tensor([0, 1])
    ce = math.log(3)
    for penalty, cost, want in (("hinge", 12.0, ce + 2.0 * 0.2), ("hinge", 8.0, ce), ("abs", 8.0, ce + 2.0 * 0.2)):
        cfg = LossConfig(form="target", target=10.0, lam=2.0, penalty=penalty)
        loss, _ = dnas_loss(logits, labels, torch.tensor(cost), cfg)
        assert math.isclose(float(loss), want, rel_tol=1e-5), penalty
    theta = torch.zeros(3, requires_grad=True)
    cm = _rows([[5.0, 10.0, 20.0]], 2.0)
    loss, _ = dnas_loss(logits, labels, cm.expected([torch.softmax(theta, 0)]), LossConfig())
    loss.backward()
    assert theta.grad[2] > 0 > theta.grad[0]  # the costly candidate is pushed down


def test_analytic_costs_match_counting_and_cost_range_check():
    from fbnas.cost.counting import count

    space = load_space("fbnet_v1", input_size=16, in_channels=1, width_multiplier=0.25)
    for kind in ("macs", "params"):
        cm = analytic_cost_model(space, kind, num_classes=10)
        for choices in ([0] * 22, [8] * 22, [i % 9 for i in range(22)]):
            rep = count(space.to_spec(choices), num_classes=10)
            want = (rep.macs if kind == "macs" else rep.params) / 1e6
            assert math.isclose(cm.of_choices(choices), want, rel_tol=1e-6)
    with pytest.raises(FbnasError, match="cost_scale"):
        LossConfig(form="paper").check_cost_range(0.5)
    LossConfig(form="paper", cost_scale=10).check_cost_range(0.5)
    with pytest.raises(FbnasError, match="target"):
        LossConfig(form="target")


def _toy_theta_step(form: str):
    """theta of two layers -> softmax weights -> logits and eq. 9 cost, as in a theta step."""
    torch.manual_seed(0)
    thetas = [torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1])), torch.nn.Parameter(torch.tensor([0.5, -0.4]))]
    w = [torch.softmax(t, 0) for t in thetas]
    feats = [torch.randn(3, 4, 5), torch.randn(2, 4, 5)]
    logits = sum((wi[:, None, None] * f).sum(0) for wi, f in zip(w, feats, strict=True))
    labels = torch.tensor([0, 3, 1, 4])
    cfg = LossConfig(form=form, alpha=0.2, beta=0.6, cost_scale=1.0)
    return thetas, logits, labels, _cost_model().expected(w), cfg, cfg


def test_cost_gradient_is_the_latency_terms_share_of_the_theta_gradient():
    from fbnas.search.updates import cost_gradient, cost_pull

    thetas, logits, labels, cost, s, cfg = _toy_theta_step("paper")
    g_cost = cost_gradient(logits, labels, cost, s, thetas)
    # by hand: d/dtheta [CE (held constant) * alpha * (log LAT)^beta]
    ce = float(F.cross_entropy(logits, labels).detach())
    want = torch.autograd.grad(ce * 0.2 * torch.log(cost).pow(0.6), thetas, retain_graph=True)
    for g, h in zip(g_cost, want, strict=True):
        assert torch.allclose(g, h, atol=1e-7)
    loss, _ = dnas_loss(logits, labels, cost, cfg)
    total = torch.autograd.grad(loss, thetas, retain_graph=True)
    # the rest is alpha * (log LAT)^beta * dCE/dtheta
    dce = torch.autograd.grad(F.cross_entropy(logits, labels), thetas)
    factor = 0.2 * math.log(float(cost.detach())) ** 0.6
    for t, g, d in zip(total, g_cost, dce, strict=True):
        assert torch.allclose(t - g, factor * d, atol=1e-6)
    pull = cost_pull(list(g_cost), list(total))
    rest = torch.cat([(t - g).flatten() for t, g in zip(total, g_cost, strict=True)])
    assert math.isclose(pull, float(torch.cat([g.flatten() for g in g_cost]).norm() / rest.norm()), rel_tol=1e-6)
    assert pull > 0


def test_cost_gradient_is_none_without_a_cost_term():
    from fbnas.search.updates import cost_gradient, cost_pull

    thetas, logits, labels, cost, s, _ = _toy_theta_step("none")
    assert cost_gradient(logits, labels, cost, s, thetas) is None
    assert cost_pull(None, None) == 0.0
