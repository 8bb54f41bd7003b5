"""Hard caps: the dynamic program's architecture equals brute force on 6-layer spaces (one and two caps), every
restricted sample meets every cap, and an unmeetable cap is one line naming the cheapest cost."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fbnas.errors import FbnasError
from fbnas.search.caps import Cap, log_probs, most_probable_under_caps, percentile_limits, sample_under_caps


def _problem(seed: int, layers: int = 6, options: int = 4, caps: int = 1):
    rng = np.random.default_rng(seed)
    probs = [rng.dirichlet(np.ones(options) * 0.7) for _ in range(layers)]
    cost_sets = [[rng.uniform(0.1, 2.0, options) for _ in range(layers)] for _ in range(caps)]
    fixed = [float(rng.uniform(0, 1)) for _ in range(caps)]
    return probs, cost_sets, fixed


def _brute(probs, caps):
    best, best_lp = None, -np.inf
    for ch in itertools.product(*(range(len(p)) for p in probs)):
        if all(c.of(ch) <= c.limit for c in caps):
            lp = sum(np.log(p[i]) for p, i in zip(probs, ch, strict=True))
            if lp > best_lp:
                best, best_lp = list(ch), lp
    return best, best_lp


@pytest.mark.parametrize("n_caps", [1, 2])
def test_dynamic_program_equals_brute_force(n_caps):
    for seed in range(25):
        probs, cost_sets, fixed = _problem(seed, caps=n_caps)
        for q in (10, 50, 90):
            caps = []
            for j, (costs, f) in enumerate(zip(cost_sets, fixed, strict=True)):
                base = Cap(f"c{j}", 0.0, costs, f)
                caps.append(Cap(f"c{j}", percentile_limits(base, [q], n=4000, seed=seed)[0], costs, f))
            want, want_lp = _brute(probs, caps)
            if want is None:
                continue
            got = most_probable_under_caps(log_probs(probs), caps)
            got_lp = sum(np.log(p[i]) for p, i in zip(probs, got, strict=True))
            assert all(c.of(got) <= c.limit for c in caps)
            assert got_lp == pytest.approx(want_lp, abs=1e-12), (seed, q, got, want)


def test_unconstrained_is_the_argmax_and_a_cap_changes_it():
    probs, (costs,), (fixed,) = _problem(3)
    argmax = [int(np.argmax(p)) for p in probs]
    loose = Cap("latency_ms", 1e9, costs, fixed)
    assert most_probable_under_caps(log_probs(probs), [loose]) == argmax
    tight = Cap("latency_ms", Cap("x", 0, costs, fixed).of(argmax) * 0.7, costs, fixed)
    got = most_probable_under_caps(log_probs(probs), [tight])
    assert got != argmax and tight.of(got) <= tight.limit  # negative control: the cap binds


def test_samples_meet_every_cap_and_follow_the_restricted_distribution():
    probs, cost_sets, fixed = _problem(7, caps=2)
    caps = [Cap(f"c{j}", percentile_limits(Cap("x", 0, c, f), [40], seed=1)[0], c, f)
            for j, (c, f) in enumerate(zip(cost_sets, fixed, strict=True))]
    samples = sample_under_caps(probs, caps, 400, np.random.default_rng(0))
    assert all(all(c.of(s) <= c.limit for c in caps) for s in samples)
    # frequencies against the exact restricted distribution of the first layer
    feasible = [ch for ch in itertools.product(*(range(len(p)) for p in probs)) if all(c.of(ch) <= c.limit
                                                                                        for c in caps)]
    w = np.array([np.prod([p[i] for p, i in zip(probs, ch, strict=True)]) for ch in feasible])
    first = np.zeros(len(probs[0]))
    for ch, wi in zip(feasible, w, strict=True):
        first[ch[0]] += wi
    first /= first.sum()
    seen = np.bincount([s[0] for s in samples], minlength=len(first)) / len(samples)
    assert np.abs(seen - first).max() < 0.1


def test_unmeetable_cap_is_one_line():
    probs, (costs,), (fixed,) = _problem(1)
    cheapest = Cap("latency_ms", 0, costs, fixed).cheapest()
    with pytest.raises(FbnasError, match=r"constraints\.latency_ms: .* cheapest architecture costs") as e:
        most_probable_under_caps(log_probs(probs), [Cap("latency_ms", cheapest * 0.9, costs, fixed, "ms")])
    assert "\n" not in str(e.value)
