"""JointNAS's fine stage (seed 000, "FBNet V3"): an adaptive genetic algorithm over (architecture, recipe)
pairs that queries only the predictor, so it reruns "in CPU minutes" whenever the constraints change.

* The population is seeded with the best coarse candidates that meet the constraints (topped up with feasible
  Sobol samples when fewer do).
* Each generation breeds ``children``: two parents by binary tournament, uniform crossover of whole groups
  (a stage's variables travel together; each recipe field is its own group) with probability ``p_cross``,
  then per-dimension mutation with probability ``p_mut`` (a choice takes another option, a range moves by a
  Gaussian step of ``sigma`` in unit-cube coordinates). A child that breaks a constraint, or was seen
  before, is discarded and bred again.
* Children are scored by the objective; the next population is the best ``population`` of parents and
  children (elitist, so the best never gets worse).
* Rates adapt to progress: a generation that improves the best lowers ``p_mut`` (x0.8) and raises ``p_cross``
  (x1.1), exploiting; a stalled one does the opposite (x1.25, x0.9), exploring; both stay in their ranges.
* It stops when the best has not improved for ``stall`` (G) generations, or after ``generations``.

Objectives: the predicted accuracy, or seed 004's training-aware reward of EfficientNetV2, ``A * S^w * P^v``
(w = -0.07, v = -0.05) with A the predicted accuracy, S the training step time from the measured step-time
table normalised by the seed population's median, and P the params normalised the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fbnas.search.jointnas.spaces import sample_key
from fbnas.seeding import derive_seed, numpy_rng
from fbnas.space import JointSpace, Sample
from fbnas.space.dims import Choice


@dataclass
class Scored:
    sample: Sample
    score: float
    predicted_acc: float  # what ``predict`` gave (the acquisition: a lower bound of the accuracy by default)
    generation: int


@dataclass
class GAResult:
    population: list[Scored]
    archive: list[Scored]  # every distinct feasible individual scored, best first
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""  # "stall" or "generations"

    @property
    def best(self) -> Scored:
        return self.archive[0]


Objective = Callable[[Sequence[Sample], np.ndarray], np.ndarray]  # (samples, predicted acc) -> scores


@dataclass(frozen=True)
class Layout:
    """A space's dimensions and its groups as index lists (computed once per run of the GA)."""

    dims: list
    groups: list[list[int]]

    @classmethod
    def of(cls, space: JointSpace) -> Layout:
        dims = space.dims
        names = [d.name for d in dims]
        return cls(dims, [[names.index(n) for n in g] for g in space.groups().values()])

    def to_unit(self, sample: Sample) -> list[float]:
        return [d.to_unit(sample[d.name]) for d in self.dims]

    def from_unit(self, u: Sequence[float]) -> Sample:
        return {d.name: d.from_unit(float(x)) for d, x in zip(self.dims, u, strict=True)}


def breed(layout: Layout, a: Sample, b: Sample, p_cross: float, p_mut: float, sigma: float,
          rng: np.random.Generator) -> Sample:
    """A child of ``a`` and ``b``: group-wise uniform crossover, then per-dimension mutation (at least one)."""
    ua, ub = layout.to_unit(a), layout.to_unit(b)
    child = list(ua)
    if rng.random() < p_cross:
        for idx in layout.groups:
            if rng.random() < 0.5:
                for i in idx:
                    child[i] = ub[i]
    mutable = [i for i, d in enumerate(layout.dims) if not isinstance(d, Choice) or d.size > 1]
    hits = [i for i in mutable if rng.random() < p_mut]
    if not hits and mutable:  # a child always differs from its parents somewhere
        hits = [mutable[int(rng.integers(len(mutable)))]]
    for i in hits:
        d = layout.dims[i]
        if isinstance(d, Choice):
            cur = int(min(d.size - 1, child[i] * d.size))
            new = int(rng.integers(d.size - 1))
            child[i] = (new + (new >= cur) + 0.5) / d.size
        else:
            child[i] = float(np.clip(child[i] + rng.normal(0.0, sigma), 0.0, 1.0))
    return layout.from_unit(child)


def evolve(space: JointSpace, seeds: Sequence[Sample], predict: Callable[[Sequence[Sample]], np.ndarray],
           feasible: Callable[[Sample], bool], cfg: Any, seed: int, objective: Objective | None = None,
           log: Callable[[str], Any] | None = None) -> GAResult:
    """Run the adaptive GA from ``seeds`` (feasible samples) under ``feasible``; scores = ``objective`` of the
    predictions (the predictions themselves by default)."""
    score_fn: Objective = objective or (lambda samples, acc: acc)

    def score(samples: list[Sample], gen: int) -> list[Scored]:
        if not samples:
            return []
        acc = np.asarray(predict(samples), dtype=np.float64)
        sc = np.asarray(score_fn(samples, acc), dtype=np.float64)
        return [Scored(s, float(v), float(a), gen) for s, v, a in zip(samples, sc, acc, strict=True)]

    def rank(items: list[Scored]) -> list[Scored]:
        return sorted(items, key=lambda x: (-x.score, sample_key(x.sample)))

    layout = Layout.of(space)
    seen: set[str] = set()
    start = []
    for s in seeds:
        k = sample_key(s)
        if k not in seen and feasible(s):
            seen.add(k)
            start.append(s)
    if not start:
        raise ValueError("the genetic algorithm needs at least one feasible seed")
    pop = rank(score(start, 0))[:cfg.population]
    archive = list(pop)
    best = pop[0].score
    p_mut, p_cross = cfg.mutation, cfg.crossover
    (mut_lo, mut_hi), (cx_lo, cx_hi) = cfg.mutation_range, cfg.crossover_range
    stall, history, stopped = 0, [], "generations"
    for gen in range(1, cfg.generations + 1):
        rng = numpy_rng(derive_seed(seed, "jointnas", "ga", gen))
        children: list[Sample] = []
        tries = 0
        while len(children) < cfg.children and tries < 50 * cfg.children:
            tries += 1
            i, j = rng.integers(len(pop), size=2), rng.integers(len(pop), size=2)
            a = pop[int(min(i))].sample  # binary tournament: the lower rank index is the better parent
            b = pop[int(min(j))].sample
            child = breed(layout, a, b, p_cross, p_mut, cfg.sigma, rng)
            k = sample_key(child)
            if k in seen:
                continue
            seen.add(k)
            if not feasible(child):
                continue
            children.append(child)
        scored = score(children, gen)
        archive += scored
        pop = rank(pop + scored)[:cfg.population]
        improved = pop[0].score > best + cfg.tol
        if improved:
            best, stall = pop[0].score, 0
            p_mut, p_cross = max(mut_lo, p_mut * 0.8), min(cx_hi, p_cross * 1.1)
        else:
            stall += 1
            p_mut, p_cross = min(mut_hi, p_mut * 1.25), max(cx_lo, p_cross * 0.9)
        history.append({"generation": gen, "best": best, "best_acc": pop[0].predicted_acc,
                        "mean": float(np.mean([x.score for x in pop])), "children": len(children),
                        "p_mut": p_mut, "p_cross": p_cross, "stall": stall})
        if log is not None and (improved or gen % 10 == 0):
            log(f"fine stage: generation {gen}: best {best:.4f} (predicted acc {pop[0].predicted_acc:.4f}), "
                f"{len(children)} children, p_mut {p_mut:.3f}, p_cross {p_cross:.3f}, stall {stall}/{cfg.stall}")
        if stall >= cfg.stall:
            stopped = "stall"
            break
        if not children:
            stopped = "exhausted"
            break
    return GAResult(pop, rank(archive), history, stopped)


def train_aware_objective(step_time: Callable[[Sample], float], params: Callable[[Sample], float],
                          seeds: Sequence[Sample], w: float, v: float) -> Objective:
    """Seed 004's reward ``A * S^w * P^v``: S and P normalised by their medians over ``seeds``."""
    s_ref = float(np.median([step_time(s) for s in seeds])) or 1.0
    p_ref = float(np.median([params(s) for s in seeds])) or 1.0

    def objective(samples: Sequence[Sample], acc: np.ndarray) -> np.ndarray:
        s = np.array([step_time(x) / s_ref for x in samples])
        p = np.array([params(x) / p_ref for x in samples])
        return np.clip(acc, 1e-6, None) * s ** w * p ** v

    return objective
