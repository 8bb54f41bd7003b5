"""FP-NAS's method (seed 002) on cases computed by hand: the adaptive K from the entropy (eq. 4), the importance
weights as the posterior over the K samples, the FD -> JD switch leaving every architecture's probability unchanged
(section 3.3), the cost term's value and its vanishing inside the target (eq. 6), and the alpha gradient (eq. 7)
against the exact gradient of L on a space small enough to enumerate."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from fbnas.cost.terms import TermCostModel
from fbnas.search.budgeted import most_probable_within
from fbnas.search.distribution import ArchDistribution, sample_count
from fbnas.search.sampled_update import (
    alpha_surrogate,
    cost_penalties,
    cost_shares,
    importance_weights,
    loss_value,
)
from fbnas.space import load_space


def _dist(logits: list[list[float]], groups: list[list[int]]) -> ArchDistribution:
    d = ArchDistribution([len(v) for v in logits], groups)
    with torch.no_grad():
        for p, v in zip(d.fd, logits, strict=True):
            p.copy_(torch.tensor(v))
    return d


# ---- K = clamp(ceil(lambda H)) ------------------------------------------------------------------------
def test_k_from_the_entropy_of_a_hand_computed_distribution():
    # P(A_0) = (1/2, 1/2), P(A_1) = (0.2, 0.3, 0.5): H = ln 2 - (0.2 ln 0.2 + 0.3 ln 0.3 + 0.5 ln 0.5) = 1.722800
    d = _dist([[0.0, 0.0], [math.log(0.2), math.log(0.3), math.log(0.5)]], [[0], [1]])
    h = math.log(2) - (0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))
    assert d.entropy() == pytest.approx(h, abs=1e-6) and h == pytest.approx(1.722800, abs=1e-6)
    assert sample_count(d.entropy(), 2.0, 1, 16) == 4  # ceil(3.4456)
    assert sample_count(d.entropy(), 1.0, 1, 16) == 2  # ceil(1.7228)
    assert sample_count(d.entropy(), 2.0, 5, 16) == 5 and sample_count(d.entropy(), 2.0, 1, 3) == 3
    assert sample_count(0.0, 0.25, 1, 16) == 1  # a decided distribution: K_min
    d.switch_to_joint()  # the same distribution as one layer of 6 tuples: the same entropy
    assert d.entropy() == pytest.approx(h, abs=1e-6)


def test_k_of_the_shipped_fpp_space_at_the_start():
    """Uniform P over fbnetv2_fpp_fmnist: H = sum over layers of log(tuples) = 21.41 nats, K = ceil(21.41 / 4) = 6."""
    space = load_space("fbnetv2_fpp_fmnist")
    index = {n: i for i, n in enumerate(space.dim_names)}
    d = ArchDistribution(space.num_choices(), [[index[n] for n in g] for g in space.groups().values()])
    h = sum(math.log(math.prod(sizes)) for sizes in space.group_sizes().values())
    assert d.entropy() == pytest.approx(h) and h == pytest.approx(21.4117, abs=1e-3)
    assert sample_count(d.entropy(), 0.25, 1, 16) == 6


# ---- importance weights ---------------------------------------------------------------------------------
def test_importance_weights_are_the_posterior_over_the_k_samples():
    """Three sampled children give two images the probabilities (0.5, 0.5), (0.9, 0.8), (0.2, 0.1) of their labels:
    batch likelihoods 0.25, 0.72, 0.02, so the posterior over the samples (each drawn once, prior 1/K) is
    (0.25, 0.72, 0.02) / 0.99. A child drawn twice gets its posterior mass twice over."""
    probs = [(0.5, 0.5), (0.9, 0.8), (0.2, 0.1)]
    y = torch.tensor([0, 0])
    lls = []
    for p in probs:
        logits = torch.log(torch.tensor([[p[0], 1 - p[0]], [p[1], 1 - p[1]]]))
        lls.append(-F.cross_entropy(logits, y, reduction="sum"))
    w = importance_weights(torch.stack(lls))
    assert torch.allclose(w, torch.tensor([0.25, 0.72, 0.02], dtype=torch.float64) / 0.99, atol=1e-6)
    w2 = importance_weights(torch.stack([lls[0], lls[1], lls[1]]))
    assert torch.allclose(w2, torch.tensor([0.25, 0.72, 0.72], dtype=torch.float64) / 1.69, atol=1e-6)
    # batch log-likelihoods of hundreds of images do not overflow
    big = importance_weights(torch.tensor([-3000.0, -3001.0, -3100.0]))
    assert torch.allclose(big, torch.tensor([1.0, math.exp(-1.0), 0.0], dtype=torch.float64) / (1 + math.exp(-1.0)))


# ---- FD -> JD -------------------------------------------------------------------------------------------
def test_the_switch_leaves_every_architecture_probability_unchanged():
    torch.manual_seed(0)
    sizes, groups = [3, 2, 4, 2, 5], [[0, 1, 2], [3], [4]]
    d = ArchDistribution(sizes, groups)
    with torch.no_grad():
        for p in d.fd:
            p.normal_(0.0, 1.5)
    every = torch.tensor(list(itertools.product(*(range(k) for k in sizes))))  # all 240 architectures
    before, marg, h, best = d.log_prob(every).detach(), d.marginals(), d.entropy(), d.most_probable()
    assert float(before.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    assert d.num_parameters() == 16
    d.switch_to_joint()
    assert d.is_joint and d.num_parameters() == 3 * 2 * 4 + 2 + 5
    after = d.log_prob(every).detach()
    assert torch.allclose(after, before, atol=1e-5), float((after - before).abs().max())
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(d.marginals(), marg, strict=True))
    assert d.entropy() == pytest.approx(h, abs=1e-5) and d.most_probable() == best
    assert [p.requires_grad for p in d.active_parameters()] == [True] * 3 and d.active_parameters()[0] is d.jd[0]
    # negative control: a joint table started from zeros (uniform) is another distribution
    with torch.no_grad():
        d.jd[0].zero_()
    assert not torch.allclose(d.log_prob(every).detach(), before, atol=1e-3)


def test_samples_follow_the_distribution_under_fd_and_jd():
    d = _dist([[0.0, math.log(3.0)], [math.log(0.1), math.log(0.9)]], [[0, 1]])
    for joint in (False, True):
        if joint:
            d.switch_to_joint()
        drawn = torch.tensor(d.sample(20000, torch.Generator().manual_seed(1)))
        freq = torch.tensor([float(((drawn[:, 0] == a) & (drawn[:, 1] == b)).double().mean())
                             for a in range(2) for b in range(2)])
        want = torch.tensor([0.25 * 0.1, 0.25 * 0.9, 0.75 * 0.1, 0.75 * 0.9])
        assert torch.allclose(freq, want.to(freq), atol=0.015), (joint, freq)
    assert d.sample(5, torch.Generator().manual_seed(3)) == d.sample(5, torch.Generator().manual_seed(3))


def test_shipped_fpp_space_has_ten_times_fewer_parameters_under_fd():
    space = load_space("fbnetv2_fpp_fmnist")
    sizes = space.group_sizes()
    fd, jd = sum(sum(s) for s in sizes.values()), sum(math.prod(s) for s in sizes.values())
    assert (fd, jd) == (63, 771) and jd >= 10 * fd


# ---- the cost term ---------------------------------------------------------------------------------------
def test_cost_term_value_and_its_vanishing_inside_the_target():
    costs = torch.tensor([0.8, 1.0, 1.5, 2.0])
    pen = cost_penalties(costs, 1.0)  # max(0, cost / TAR - 1)
    assert pen.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0])
    assert cost_shares(pen).tolist() == pytest.approx([0.0, 0.0, 1 / 3, 2 / 3])
    lls = torch.tensor([-10.0, -11.0, -12.0, -13.0])
    v = loss_value(lls, pen, beta=0.5, n_images=8)
    assert v["c"] == pytest.approx(0.375) and v["cost_term"] == pytest.approx(0.5 * math.log(0.375))
    mix = math.log(sum(math.exp(x) for x in lls.tolist()) / 4)
    assert v["nll"] == pytest.approx(-mix / 8)
    inside = cost_penalties(torch.tensor([0.5, 0.9, 1.0]), 1.0)
    assert inside.tolist() == [0.0, 0.0, 0.0] and cost_shares(inside).tolist() == [0.0, 0.0, 0.0]
    assert loss_value(lls[:3], inside, 0.5, 8)["cost_term"] is None
    assert cost_penalties(costs, None).tolist() == [0.0] * 4  # no target: no cost term


def _surrogate_grad(d: ArchDistribution, choices: list[list[int]], w, c, beta: float) -> list[torch.Tensor]:
    d.zero_grad()
    alpha_surrogate(d.log_prob(torch.tensor(choices)), w, c, beta).backward()
    return [p.grad.clone() for p in d.active_parameters()]


def test_inside_the_target_the_gradient_is_the_likelihoods_alone():
    d = _dist([[0.3, -0.2], [0.1, 0.0, 0.4]], [[0], [1]])
    choices = [[0, 1], [1, 2], [0, 0]]
    w = importance_weights(torch.tensor([-3.0, -1.0, -2.0]))
    zero = cost_shares(cost_penalties(torch.tensor([0.7, 0.9, 1.0]), 1.0))
    with_beta = _surrogate_grad(d, choices, w, zero, beta=5.0)
    without = _surrogate_grad(d, choices, w, zero, beta=0.0)
    assert all(torch.equal(a, b) for a, b in zip(with_beta, without, strict=True))
    # by hand for dimension 0: -sum_k w_k (onehot(i_k) - p)
    p0 = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    hand = -sum(float(w[k]) * (F.one_hot(torch.tensor(choices[k][0]), 2).float() - p0) for k in range(3))
    assert torch.allclose(with_beta[0], hand, atol=1e-6)


@pytest.mark.parametrize("baseline", [False, True])
@pytest.mark.parametrize("joint", [False, True])
def test_the_alpha_gradient_estimates_the_gradient_of_the_loss(joint, baseline):
    """On a 2 x 3 space with a likelihood and a cost per architecture, eq. 7's estimate from many samples is the
    exact gradient of L(alpha) = -log sum_A P(y|A) P(A|alpha) + beta log sum_A C(A) P(A|alpha)."""
    torch.manual_seed(4)
    d = _dist([[0.2, -0.4], [0.5, 0.0, -0.3]], [[0, 1]])
    if joint:
        d.switch_to_joint()
    archs = [[a, b] for a in range(2) for b in range(3)]
    lik = torch.tensor([0.30, 0.10, 0.05, 0.60, 0.20, 0.40], dtype=torch.float64)  # P(y | X, w, A)
    macs = torch.tensor([1.0, 2.0, 3.0, 1.5, 2.5, 4.0], dtype=torch.float64)
    beta, target = 0.7, 1.6
    pen_all = cost_penalties(macs, target)
    d.zero_grad()
    p = d.log_prob(torch.tensor(archs)).double().exp()
    loss = -torch.log((lik * p).sum()) + beta * torch.log((pen_all * p).sum())
    loss.backward()
    exact = [q.grad.clone() for q in d.active_parameters()]
    drawn = d.sample(40000, torch.Generator().manual_seed(5))
    idx = [a * 3 + b for a, b in drawn]
    w = importance_weights(torch.log(lik[idx]))
    c = cost_shares(cost_penalties(macs[idx], target), baseline)
    est = _surrogate_grad(d, drawn, w, c, beta)
    for e, x in zip(est, exact, strict=True):
        assert torch.allclose(e.double(), x.double(), atol=0.02), (e, x)
    # negative control: without the cost term the estimate misses the exact gradient
    off = _surrogate_grad(d, drawn, w, c, 0.0)
    assert not all(torch.allclose(e.double(), x.double(), atol=0.02) for e, x in zip(off, exact, strict=True))


def test_the_floor_penalises_architectures_below_the_band():
    costs = torch.tensor([0.5, 0.9, 0.95, 1.0, 1.2], dtype=torch.float64)
    pen = cost_penalties(costs, 1.0, floor=0.9)  # max(0, r - 1) + max(0, 0.9 - r)
    assert pen.tolist() == pytest.approx([0.4, 0.0, 0.0, 0.0, 0.2])
    assert cost_penalties(costs, 1.0, floor=0.0).tolist() == cost_penalties(costs, 1.0).tolist()  # the seed's


# ---- the found architecture within the target ---------------------------------------------------------------
def _coupled_case(seed: int) -> tuple[ArchDistribution, TermCostModel]:
    """4 variables in 3 layers, a cost term coupling layer 1 with layer 0's variable (like channels)."""
    g = torch.Generator().manual_seed(seed)
    d = ArchDistribution([3, 2, 3, 2], [[0], [1, 2], [3]])
    with torch.no_grad():
        for p in d.fd:
            p.copy_(2.0 * torch.randn(p.shape, generator=g))
    if seed % 2:
        d.switch_to_joint()
        with torch.no_grad():
            for p in d.jd:
                p.add_(torch.randn(p.shape, generator=g))
    terms = [((0,), torch.rand(3, generator=g)), ((1, 2, 0), torch.rand(2, 3, 3, generator=g)),
             ((3, 2), torch.rand(2, 3, generator=g))]
    return d, TermCostModel("macs", "MMACs", terms, 0.25)


@pytest.mark.parametrize("seed", range(6))
def test_most_probable_within_the_band_equals_brute_force(seed):
    d, cm = _coupled_case(seed)
    archs = [list(a) for a in itertools.product(range(3), range(2), range(3), range(2))]
    costs = [cm.of_choices(a) for a in archs]
    probs = [d.probability(a) for a in archs]
    for lo, hi in [(0.9, 1.2), (1.2, 1.4), (0.0, 0.8), (1.5, 1.7)]:
        inside = [i for i, c in enumerate(costs) if lo <= c <= hi]
        got = most_probable_within(d, cm, lo, hi)
        if not inside:
            assert got is None
            continue
        want = max(inside, key=lambda i: probs[i])
        assert got is not None and lo <= cm.of_choices(got) <= hi
        assert d.probability(got) == pytest.approx(probs[want])


def test_within_the_band_on_the_shipped_space_beats_every_sample_in_the_band():
    from fbnas.cost.terms import analytic_cost_model

    space = load_space("fbnetv2_fpp_fmnist")
    cm = analytic_cost_model(space, "macs", 10)
    d = ArchDistribution([dim.size for dim in space.dims],
                         [[space.dim_names.index(n) for n in names] for names in space.groups().values()])
    with torch.no_grad():
        for p in d.fd:
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    free = d.most_probable()
    hi = 0.5 * cm.of_choices(free)  # the most probable architecture is far over the band
    lo = 0.9 * hi
    got = most_probable_within(d, cm, lo, hi)
    assert got is not None and lo <= cm.of_choices(got) <= hi
    drawn = [a for a in d.sample(4000, torch.Generator().manual_seed(0)) if lo <= cm.of_choices(a) <= hi]
    assert drawn and d.probability(got) >= max(d.probability(a) for a in drawn)
    assert most_probable_within(d, cm, 0.0, cm.min_max()[0] / 2) is None  # below every architecture


def test_the_cost_baseline_moves_mass_between_the_samples_only():
    pen = cost_penalties(torch.tensor([0.8, 1.0, 1.5, 2.0], dtype=torch.float64), 1.0)
    c = cost_shares(pen, baseline=True)
    assert c.tolist() == pytest.approx([-0.25, -0.25, 1 / 3 - 0.25, 2 / 3 - 0.25])
    assert float(c.sum()) == pytest.approx(0)
    inside = cost_penalties(torch.tensor([0.5, 0.9], dtype=torch.float64), 1.0)
    assert cost_shares(inside, baseline=True).tolist() == [0.0, 0.0]  # inside the target the term still vanishes
    # K copies of one over-target architecture: without the baseline beta > 1 pushes it down, with it nothing moves
    d = _dist([[0.3, -0.2], [0.1, 0.0, 0.4]], [[0, 1]])
    d.switch_to_joint()
    same = [[1, 2]] * 3
    w = importance_weights(torch.zeros(3))
    pen = cost_penalties(torch.tensor([2.0] * 3, dtype=torch.float64), 1.0)
    pushed = _surrogate_grad(d, same, w, cost_shares(pen), beta=2.0)
    assert float(pushed[0][1 * 3 + 2]) > 0  # gradient descent lowers the drawn tuple's logit
    kept = _surrogate_grad(d, same, w, cost_shares(pen, baseline=True), beta=2.0)
    plain = _surrogate_grad(d, same, w, torch.zeros(3), beta=0.0)
    assert all(torch.allclose(a, b) for a, b in zip(kept, plain, strict=True))
