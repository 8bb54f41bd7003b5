"""Hard caps on additive costs: the most probable architecture under every cap, and samples restricted to them.

With a latency table (or analytic MACs / params), an architecture's cost is a sum over layers (seed 000,
eq. 3), and the learned distribution is a product over layers (eq. 6). So the most probable architecture
subject to ``cost_k(a) <= cap_k`` for every cap k is an exact dynamic program over layers: keep, after each
layer, every partial architecture that no other one beats on log-probability while costing no more on every
cap (a Pareto front), and drop what already exceeds a cap. No one-shot method can promise a latency threshold
(the question of NNI#4699); a table makes it a knapsack.

Sampling from the distribution restricted to the caps runs the same recursion backwards on a grid of the
remaining budget, with every cost rounded *up* to the grid, so every sample satisfies the caps exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fbnas.errors import FbnasError

MAX_FRONT = 200_000  # Pareto points kept per layer before the front is thinned on a fine grid


@dataclass(frozen=True)
class Cap:
    """One upper bound: ``costs[l][i]`` per layer and option, ``fixed`` for the rest of the network."""

    name: str
    limit: float
    costs: list[np.ndarray]
    fixed: float = 0.0
    unit: str = ""

    def of(self, choices: Sequence[int]) -> float:
        return self.fixed + float(sum(c[int(i)] for c, i in zip(self.costs, choices, strict=True)))

    def cheapest(self) -> float:
        return self.fixed + float(sum(c.min() for c in self.costs))


def check_feasible(caps: Sequence[Cap]) -> None:
    """One line naming the cap and the cheapest architecture's cost when a cap cannot be met in the space."""
    for cap in caps:
        low = cap.cheapest()
        if low > cap.limit:
            raise FbnasError(f"constraints.{cap.name}: {cap.limit:g} {cap.unit} cannot be met in this space: its "
                             f"cheapest architecture costs {low:.4g} {cap.unit}")


def most_probable_under_caps(logp: Sequence[np.ndarray], caps: Sequence[Cap]) -> list[int]:
    """The option per layer maximising ``sum_l logp[l][i_l]`` with every cap's cost <= its limit (exact)."""
    check_feasible(caps)
    n = len(logp)
    budgets = np.array([c.limit - c.fixed for c in caps], dtype=np.float64)
    # a state: cumulative cost per cap, log-probability, choices so far (kept as parent pointers)
    costs = np.zeros((1, len(caps)))
    score = np.zeros(1)
    parents: list[tuple[np.ndarray, np.ndarray]] = []
    for layer in range(n):
        k = len(logp[layer])
        step = np.stack([cap.costs[layer] for cap in caps], axis=1) if caps else np.zeros((k, 0))
        new_costs = (costs[:, None, :] + step[None, :, :]).reshape(-1, len(caps))
        new_score = (score[:, None] + np.asarray(logp[layer], dtype=np.float64)[None, :]).reshape(-1)
        origin = np.repeat(np.arange(len(score)), k)
        option = np.tile(np.arange(k), len(score))
        # what is left for the later layers must still fit their cheapest options
        rest = np.array([sum(float(c.min()) for c in cap.costs[layer + 1:]) for cap in caps])
        ok = np.all(new_costs + rest[None, :] <= budgets[None, :] + 1e-12 * np.maximum(1.0, np.abs(budgets)), axis=1)
        keep = _pareto(new_costs[ok], new_score[ok])
        idx = np.nonzero(ok)[0][keep]
        costs, score = new_costs[idx], new_score[idx]
        parents.append((origin[idx], option[idx]))
    best = int(np.argmax(score))
    choices = [0] * n
    for layer in range(n - 1, -1, -1):
        origin, option = parents[layer]
        choices[layer] = int(option[best])
        best = int(origin[best])
    return choices


def _pareto(costs: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the states no other state beats (higher or equal score at no higher cost on every cap)."""
    if len(score) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((*(costs[:, j] for j in reversed(range(costs.shape[1]))), -score))
    if costs.shape[1] == 0:
        return order[:1]
    if costs.shape[1] == 1:  # sorted by score descending: keep each state cheaper than every better one
        c = costs[order, 0]
        best_so_far = np.minimum.accumulate(np.concatenate([[np.inf], c[:-1]]))
        return order[c < best_so_far]
    kept: list[int] = []
    kept_costs = np.zeros((0, costs.shape[1]))
    for i in order:  # best score first: a state survives unless a better one costs no more everywhere
        if len(kept) and np.any(np.all(kept_costs <= costs[i] + 0.0, axis=1)):
            continue
        kept.append(int(i))
        kept_costs = np.vstack([kept_costs, costs[i]])
        if len(kept) > MAX_FRONT:
            break
    return np.array(kept, dtype=np.int64)


def sample_under_caps(probs: Sequence[np.ndarray], caps: Sequence[Cap], k: int, rng: np.random.Generator,
                      grid: int = 4000) -> list[list[int]]:
    """``k`` architectures drawn from ``prod_l probs[l]`` restricted to the caps (costs rounded up to a grid of
    ``grid`` steps per cap, so every sample satisfies every cap; one cap is handled exactly on its grid, further
    caps by rejection within the first one's restriction)."""
    check_feasible(caps)
    if not caps:
        return [[int(rng.choice(len(p), p=p / p.sum())) for p in probs] for _ in range(k)]
    first, others = caps[0], caps[1:]
    budget = first.limit - first.fixed
    unit = budget / grid if budget > 0 else 1.0
    steps = [np.ceil(np.maximum(c, 0.0) / unit - 1e-9).astype(np.int64) for c in first.costs]
    n = len(probs)
    # mass[l][b]: probability that layers l.. fit in b grid steps
    mass = np.zeros((n + 1, grid + 1))
    mass[n, :] = 1.0
    for layer in range(n - 1, -1, -1):
        p = np.asarray(probs[layer], dtype=np.float64)
        for pi, s in zip(p, steps[layer], strict=True):
            if s <= grid and pi > 0:
                mass[layer, s:] += pi * mass[layer + 1, : grid + 1 - s]
    if mass[0, grid] <= 0:
        raise FbnasError(f"constraints.{first.name}: no architecture with nonzero probability fits "
                         f"{first.limit:g} {first.unit}")
    out: list[list[int]] = []
    tries = 0
    while len(out) < k:
        tries += 1
        if tries > 1000 * max(1, k):
            raise FbnasError(f"constraints: cannot sample architectures that meet every cap "
                             f"({', '.join(c.name for c in caps)}) from the learned distribution")
        b, choices = grid, []
        for layer in range(n):
            p = np.asarray(probs[layer], dtype=np.float64)
            w = np.array([pi * mass[layer + 1, b - s] if s <= b else 0.0 for pi, s in zip(p, steps[layer],
                                                                                      strict=True)])
            i = int(rng.choice(len(w), p=w / w.sum()))
            choices.append(i)
            b -= int(steps[layer][i])
        if all(c.of(choices) <= c.limit for c in others):
            out.append(choices)
    return out


def percentile_limits(cap_costs: Cap, qs: Sequence[float], n: int = 20_000, seed: int = 0) -> list[float]:
    """The ``qs`` percentiles of a cap's cost over uniform random architectures (for caps at the 10th, 50th,
    90th percentile of a space)."""
    rng = np.random.default_rng(seed)
    total = np.full(n, cap_costs.fixed)
    for c in cap_costs.costs:
        total += c[rng.integers(0, len(c), n)]
    return [float(np.percentile(total, q)) for q in qs]


def log_probs(probs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-300, None)) for p in probs]

