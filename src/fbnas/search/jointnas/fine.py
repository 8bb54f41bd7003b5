"""JointNAS's fine stage around the genetic algorithm (:mod:`fbnas.search.jointnas.evolution`): its seed
population, its objective (predicted accuracy, or seed 004's ``A * S^w * P^v`` with a measured step-time
table), and the result entries of the top-K (architecture, recipe) pairs with their predicted accuracy and
exact costs. It needs only the predictor, the constraints and the coarse trials, so ``--reuse-predictor``
reruns exactly this under new constraints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbnas.search.jointnas.evolution import GAResult, Scored, evolve, train_aware_objective
from fbnas.search.jointnas.predictor import AccuracyPredictor
from fbnas.search.jointnas.spaces import ARCH, Constraints, feasible_pool, sample_key
from fbnas.space import JointSpace, Sample


@dataclass
class FineResult:
    ga: GAResult
    top: list[dict[str, Any]]
    archive: list[dict[str, Any]]  # every scored individual's predicted accuracy and costs (plots)
    seeds: int
    seconds: float


def retrain_recipe(space: JointSpace, base: dict[str, Any], sample: Sample) -> dict[str, Any]:
    """The recipe a found pair is retrained with: the base recipe under its searched fields, without the
    run-specific ``epochs``, ``seed`` and ``threads`` (``fbnas train`` sets those)."""
    from fbnas.train.recipe import Recipe

    full = Recipe.from_dict({**base, **(space.build(sample).recipe or {})}, "recipe").to_dict()
    return {k: v for k, v in full.items() if k not in ("epochs", "seed", "threads")}


def seed_population(space: JointSpace, constraints: Constraints, ranked: list[Sample], predictor: AccuracyPredictor,
                    size: int, seed: int) -> list[Sample]:
    """The best coarse candidates (``ranked``, best first) that meet the constraints; when fewer than ``size``
    do, topped up with the best-predicted feasible Sobol samples."""
    out, seen = [], set()
    for s in ranked:
        k = sample_key(s)
        if k not in seen and constraints.ok(s):
            seen.add(k)
            out.append(s)
        if len(out) == size:
            return out
    extra = [s for s in feasible_pool(space, constraints, max(16 * size, 256), seed + 1) if sample_key(s) not in seen]
    pred = predictor.predict(extra)
    order = sorted(range(len(extra)), key=lambda i: (-pred[i], i))
    return out + [extra[i] for i in order[:size - len(out)]]


def step_time_fn(space: JointSpace, cfg: Any, folder_path: Path, num_classes: int, log: Callable[[str], Any]
                 ) -> Callable[[Sample], float]:
    """S of a joint sample: its architecture's training step time from the measured step-time table."""
    from fbnas.lut.steptime import StepTimeTable

    st = cfg.jointnas.step_time
    path = Path(st.path) if st.path else folder_path / "step_time.json"
    table = StepTimeTable(path, batch=st.batch, channels_last=cfg.data.channels_last)
    part = space.parts[ARCH]
    t0 = time.perf_counter()
    n = table.build_for(part, num_classes, rounds=st.rounds,
                        progress=lambda done, total: log(f"step-time table: {done}/{total} blocks measured"))
    if n:
        log(f"step-time table {path}: measured {n} blocks (forward + backward, batch {st.batch}) in "
            f"{time.perf_counter() - t0:.0f} s")
    cache: dict[str, float] = {}

    def step_time(sample: Sample) -> float:
        arch_sample = space.split(sample)[ARCH]
        key = sample_key(arch_sample)
        if key not in cache:
            cache[key] = table.predict(part.build(arch_sample).arch, num_classes)
        return cache[key]

    return step_time


def entry(space: JointSpace, constraints: Constraints, base_recipe: dict[str, Any], scored: Scored, rank: int,
          num_classes: int, step_time: Callable[[Sample], float] | None) -> dict[str, Any]:
    from fbnas.cost.counting import count

    arch = space.build(scored.sample).arch
    assert arch is not None
    arch = arch.copy(name=f"jointnas_top{rank}")
    report = count(arch, num_classes=num_classes)
    costs = constraints.costs(scored.sample)
    return {"rank": rank, "sample": scored.sample, "arch": arch.to_dict(),
            "recipe": retrain_recipe(space, base_recipe, scored.sample), "predicted_acc": scored.predicted_acc,
            "acquisition": scored.predicted_acc, "score": scored.score, "macs": int(report.macs),
            "params": int(report.params),
            "latency_ms": costs["latency_ms"], "step_time_ms": None if step_time is None else step_time(scored.sample),
            "constraints": constraints.describe(scored.sample), "generation": scored.generation}


def run_fine(space: JointSpace, cfg: Any, predictor: AccuracyPredictor, constraints: Constraints,
             ranked: list[Sample], base_recipe: dict[str, Any], num_classes: int, folder_path: Path,
             log: Callable[[str], Any]) -> FineResult:
    """The adaptive GA under ``constraints`` from the coarse candidates ``ranked`` (best measured first)."""
    ev = cfg.jointnas.evolution
    t0 = time.perf_counter()
    seeds = seed_population(space, constraints, ranked, predictor, ev.population, cfg.seed)
    log(f"fine stage: adaptive GA ({ev.objective}) from {len(seeds)} seeds "
        f"({sum(1 for s in seeds if s in ranked)} coarse candidates), {ev.children} children per generation, "
        f"stall {ev.stall}")
    step_time = None
    objective = None
    if ev.objective == "train_aware":
        step_time = step_time_fn(space, cfg, folder_path, num_classes, log)
        objective = train_aware_objective(step_time, lambda s: constraints.costs(s)["params"], seeds, ev.w, ev.v)
    def acquisition(samples: list[Sample]):
        return predictor.lower_bound(samples, ev.uncertainty)

    ga = evolve(space, seeds, acquisition, constraints.ok, ev, cfg.seed, objective, log)
    log(f"fine stage: stopped after {len(ga.history)} generations ({ga.stopped}); {len(ga.archive)} pairs scored")
    top = [entry(space, constraints, base_recipe, s, r + 1, num_classes, step_time)
           for r, s in enumerate(ga.archive[:ev.top_k])]
    members = predictor.predict_members([e["sample"] for e in top])
    for e, m, a in zip(top, members.mean(0), members.std(0), strict=True):
        e["predicted_acc"], e["predicted_std"] = float(m), float(a)
    archive = [{"predicted_acc": s.predicted_acc, **constraints.costs(s.sample)} for s in ga.archive]
    return FineResult(ga, top, archive, len(seeds), time.perf_counter() - t0)
