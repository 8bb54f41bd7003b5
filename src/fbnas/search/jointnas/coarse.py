"""JointNAS's coarse stage (seed 000, "FBNet V3"): iteratively train candidates and the predictor.

1. A pool of ``coarse.pool`` scrambled-Sobol joint samples that meet the constraints (``scipy.stats.qmc``).
2. Iteration 0 (calibration): the first ``calibration.candidates`` points of the pool train for the full proxy
   budget; their accuracy after every epoch gives the early-stopping epoch, the first whose Kendall tau with
   the final accuracy reaches ``calibration.threshold`` (0.92). Their accuracy at that epoch is their result.
3. Iterations 1..: the predictor, refitted on every result so far, scores the rest of the pool; the next
   ``coarse.batch`` candidates are its top predictions plus an ``explore`` share drawn at random from the rest;
   each trains on the proxy, stopped at the early-stopping epoch, through the executor.
4. The predictor is refitted on all results (and saved with the run).

Every draw is keyed by (seed, stage, iteration), every trial is persisted in ``trials/<id>/`` (``id`` is its
pool index) before its worker takes the next, and a finished trial is read back instead of trained again, so
a run resumed after SIGKILL ends with the result of an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fbnas.errors import FbnasError
from fbnas.runs import RunFolder
from fbnas.search.jointnas.earlystop import early_stop_epoch
from fbnas.search.jointnas.predictor import AccuracyPredictor, Pretrained, fit_predictor, rank_metrics
from fbnas.search.jointnas.spaces import ARCH, Constraints, feasible_pool
from fbnas.search.jointnas.trials import ProxyData, TrialTask, run_trial
from fbnas.seeding import derive_seed, numpy_rng
from fbnas.space import JointSpace, Sample


def trial_id(index: int) -> str:
    return f"p{index:04d}"


@dataclass
class Context:
    """What the coarse stage works with (built once by the strategy)."""

    space: JointSpace
    cfg: Any  # JointNasConfig
    folder: RunFolder
    constraints: Constraints
    data: ProxyData
    num_classes: int
    base_recipe: dict[str, Any]  # Recipe fields every trial starts from (searched fields go over them)
    executor: Any
    log: Callable[[str], Any]


@dataclass
class CoarseResult:
    pool: list[Sample]
    trials: dict[str, dict[str, Any]]  # id -> trial result (as persisted)
    early_stop: int
    correlation: list[float] | None  # rank correlation by epoch (None when calibration.epoch is fixed)
    iterations: list[dict[str, Any]]
    predictor: AccuracyPredictor
    ahead: list[dict[str, Any]] = field(default_factory=list)  # held-out predictions of each next batch
    seconds: dict[str, float] = field(default_factory=dict)

    def acc(self, tid: str) -> float:
        return measured_acc(self.trials[tid], self.early_stop)

    def ranked(self) -> list[str]:
        """Trial ids by measured accuracy, best first (ties: id)."""
        return ranked_by_measured(self.trials, self.early_stop)


def measured_acc(trial: dict[str, Any], early_stop: int) -> float:
    """A trial's proxy accuracy: its validation accuracy after the early-stopping epoch."""
    curve = trial["curve"]
    return float(curve[min(early_stop, len(curve)) - 1])


def ranked_by_measured(trials: dict[str, dict[str, Any]], early_stop: int) -> list[str]:
    """Trial ids by measured proxy accuracy, best first (ties: id)."""
    return sorted(trials, key=lambda t: (-measured_acc(trials[t], early_stop), t))


def trial_recipe(ctx: Context, sample: Sample) -> dict[str, Any]:
    """The full Recipe of a candidate: the base recipe, its searched fields, the proxy's schedule and threads."""
    from fbnas.train.recipe import Recipe

    searched = ctx.space.build(sample).recipe or {}
    cfg = ctx.cfg
    recipe = Recipe.from_dict({**ctx.base_recipe, **searched, "epochs": cfg.jointnas.proxy.epochs,
                               "seed": cfg.seed, "threads": cfg.jointnas.executor.threads}, "trial recipe")
    return recipe.to_dict()


def make_task(ctx: Context, tid: str, role: str, sample: Sample, stop_epoch: int | None) -> TrialTask:
    arch = ctx.space.build(sample).arch
    assert arch is not None
    return TrialTask(str(ctx.folder.trial(tid).path), tid, role, sample, arch.copy(name=tid).to_dict(),
                     trial_recipe(ctx, sample), stop_epoch, ctx.data, ctx.num_classes,
                     dict(ctx.constraints.costs(sample)))


def _same_task(done: dict[str, Any], task: TrialTask) -> bool:
    return (done.get("sample") == task.sample and done.get("recipe") == task.recipe
            and done.get("stop_epoch") == task.stop_epoch and done.get("arch") == task.arch)


def train_tasks(ctx: Context, tasks: list[TrialTask], stage: str) -> dict[str, dict[str, Any]]:
    """Results of ``tasks``: finished trials read back (never retrained), the others through the executor."""
    out: dict[str, dict[str, Any]] = {}
    todo = []
    for task in tasks:
        folder = RunFolder(task.trial_dir, "trial")
        done = folder.read_result() if folder.is_finished else None
        if done is not None:
            if not _same_task(done, task):
                raise FbnasError(f"{folder.path}: a finished trial of another candidate or recipe; this run folder "
                                 "was made with another config (start in a new --out)")
            out[task.trial_id] = done
        else:
            todo.append(task)
    if out:
        ctx.log(f"{stage}: {len(out)} of {len(tasks)} trials already finished (read back, not retrained)")
    t0 = time.perf_counter()

    def on_result(i: int, result: dict[str, Any]) -> None:
        task = todo[i]
        c = task.costs
        stop = f"epoch {result['epochs_trained']}" + (" (diverged)" if result.get("diverged") else "")
        ctx.log(f"{stage}: trial {task.trial_id} finished ({len(out) + 1}/{len(tasks)}): val acc "
                f"{100 * result['acc']:.2f}% at {stop}, {c.get('macs', 0):.2f} MMACs, {result['wall_s']:.0f} s "
                f"[{time.perf_counter() - t0:.0f} s]")
        out[task.trial_id] = result

    if todo:
        ctx.log(f"{stage}: training {len(todo)} trials ({', '.join(t.trial_id for t in todo[:6])}"
                f"{', ...' if len(todo) > 6 else ''})")
        ctx.executor.map(run_trial, todo, on_result)
    return {t.trial_id: out[t.trial_id] for t in tasks}


def select_batch(ctx: Context, pool: list[Sample], remaining: list[int], predicted: np.ndarray, k: int,
                 iteration: int) -> list[int]:
    """The next batch: the top ``(1 - explore) k`` predictions, then ``explore k`` drawn at random from the rest."""
    k = min(k, len(remaining))
    n_explore = int(round(ctx.cfg.jointnas.coarse.explore * k))
    order = sorted(range(len(remaining)), key=lambda i: (-predicted[i], remaining[i]))
    exploit = [remaining[i] for i in order[:k - n_explore]]
    rest = [remaining[i] for i in order[k - n_explore:]]
    rng = numpy_rng(derive_seed(ctx.cfg.seed, "jointnas", "explore", iteration))
    explore = [rest[int(i)] for i in rng.choice(len(rest), size=min(n_explore, len(rest)), replace=False)]
    return exploit + sorted(explore)


def run_coarse(ctx: Context, pre: Pretrained, checkpoint: Callable[[dict[str, Any]], None]) -> CoarseResult:
    """The coarse stage; ``checkpoint(state)`` after every iteration (plain data and tensors)."""
    cfg = ctx.cfg.jointnas
    seed = ctx.cfg.seed
    t_start = time.perf_counter()
    pool = feasible_pool(ctx.space, ctx.constraints, cfg.coarse.pool, seed)
    ctx.log(f"coarse stage: Sobol pool of {len(pool)} candidates that meet the constraints")
    n_cal = min(cfg.calibration.candidates, len(pool))
    fixed = cfg.calibration.epoch
    label = "calibration" if fixed is None else "first batch"
    ctx.log(f"coarse stage, iteration 1/{cfg.coarse.iterations} ({label}): {n_cal} candidates, "
            f"{'the full proxy budget of ' + str(cfg.proxy.epochs) if fixed is None else str(fixed)} epochs")
    first = [make_task(ctx, trial_id(i), "calibration" if fixed is None else "coarse", pool[i], fixed)
             for i in range(n_cal)]
    trials = train_tasks(ctx, first, f"coarse 1/{cfg.coarse.iterations}")
    seconds = {"calibration": time.perf_counter() - t_start}
    correlation = None
    if fixed is None:
        early, correlation = early_stop_epoch([trials[t.trial_id]["curve"] for t in first], cfg.calibration.threshold)
        corr_s = ", ".join(f"{c:.2f}" for c in correlation)
        ctx.log(f"early stopping: Kendall tau with the final accuracy by epoch [{corr_s}]; first >= "
                f"{cfg.calibration.threshold:g}: epoch {early} of {cfg.proxy.epochs}")
    else:
        early = fixed
    trained = list(range(n_cal))
    iterations: list[dict[str, Any]] = []
    ahead: list[dict[str, Any]] = []

    def fit(tag: int) -> AccuracyPredictor:
        ids = [trial_id(i) for i in trained]
        return fit_predictor(ctx.space, [pool[i] for i in trained],
                             [measured_acc(trials[t], early) for t in ids], cfg.predictor, seed, pre, tag)

    def record(it: int, predictor: AccuracyPredictor, batch: list[int]) -> None:
        accs = [measured_acc(trials[trial_id(i)], early) for i in trained]
        fitted = rank_metrics(predictor.predict([pool[i] for i in trained]).tolist(), accs)
        best = max(trained, key=lambda i: (measured_acc(trials[trial_id(i)], early), -i))
        row = {"epoch": it, "iteration": it + 1, "batch": [trial_id(i) for i in batch], "trials": len(trained),
               "early_stop_epoch": early, "best_trial": trial_id(best),
               "best_acc": measured_acc(trials[trial_id(best)], early), "mean_acc": float(np.mean(accs)),
               "fit_spearman": fitted["spearman"], "fit_kendall": fitted["kendall"]}
        if ahead and ahead[-1]["iteration"] == it + 1:
            row["ahead_spearman"] = ahead[-1]["spearman"]
            row["ahead_kendall"] = ahead[-1]["kendall"]
        iterations.append(row)
        ctx.folder.write_metrics(iterations)
        checkpoint({"iteration": it, "early_stop_epoch": early, "trials": [trial_id(i) for i in trained],
                    "predictor": predictor.state()})

    predictor = fit(0)
    record(0, predictor, list(range(n_cal)))
    for it in range(1, cfg.coarse.iterations):
        taken = set(trained)
        remaining = [i for i in range(len(pool)) if i not in taken]
        if not remaining:
            ctx.log("coarse stage: the pool is exhausted")
            break
        predicted = predictor.predict([pool[i] for i in remaining])
        batch = select_batch(ctx, pool, remaining, predicted, cfg.coarse.batch, it)
        by_index = dict(zip(remaining, predicted.tolist(), strict=True))
        ctx.log(f"coarse stage, iteration {it + 1}/{cfg.coarse.iterations}: {len(batch)} candidates "
                f"(predicted val acc {100 * min(by_index[i] for i in batch):.1f}-"
                f"{100 * max(by_index[i] for i in batch):.1f}%), stopped at epoch {early}")
        tasks = [make_task(ctx, trial_id(i), "coarse", pool[i], early) for i in batch]
        trials.update(train_tasks(ctx, tasks, f"coarse {it + 1}/{cfg.coarse.iterations}"))
        measured = [measured_acc(trials[trial_id(i)], early) for i in batch]
        ahead.append({"iteration": it + 1, "trials": [trial_id(i) for i in batch],
                      "predicted": [by_index[i] for i in batch], "measured": measured,
                      **rank_metrics([by_index[i] for i in batch], measured)})
        trained += batch
        predictor = fit(it)
        record(it, predictor, batch)
    seconds["coarse"] = time.perf_counter() - t_start
    return CoarseResult(pool, {trial_id(i): trials[trial_id(i)] for i in trained}, early, correlation, iterations,
                        predictor, ahead, seconds)


def arch_costs(space: JointSpace, num_classes: int) -> Callable[[Sample], dict[str, Any]]:
    """MACs / params (millions) of an architecture-part sample, in all and per stage (the proxy head's free
    targets)."""
    from fbnas.cost.counting import count

    part = space.parts[ARCH]

    def costs(sample: Sample) -> dict[str, Any]:
        report = count(part.build(sample).arch, num_classes=num_classes)
        stages = report.per_stage()
        return {"macs": report.macs / 1e6, "params": report.params / 1e6,
                "stage_macs": [s["macs"] / 1e6 for s in stages], "stage_params": [s["params"] / 1e6 for s in stages]}

    return costs
