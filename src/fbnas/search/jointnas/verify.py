"""JointNAS's verification stage: the fine stage's best proposals are trained on the proxy, and the answer is
the best *measured* pair.

The genetic algorithm (:mod:`.fine`) ranks pairs by the predictor alone, and far from the trials the predictor
extrapolates: an unmeasured top-1 can be a recipe no trial supports. So the ``verify.candidates`` best proposals
(at most one per architecture, none already trained) are proxy-trained like coarse candidates (stopped at the
early-stopping epoch, through the executor, persisted in ``trials/v<rank>/``), and the result ranks every
trained pair that meets the constraints by its measured proxy accuracy: random search's rule, over candidates
the predictor chose. The verified proposals' predicted and measured accuracies are a held-out check of the
predictor on its own picks. ``verify.candidates: 0`` (and ``--reuse-predictor``, which trains nothing) keep
the predictor's ranking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fbnas.search.jointnas.coarse import (
    CoarseResult,
    Context,
    make_task,
    measured_acc,
    ranked_by_measured,
    train_tasks,
)
from fbnas.search.jointnas.evolution import Scored
from fbnas.search.jointnas.fine import FineResult, entry
from fbnas.search.jointnas.predictor import AccuracyPredictor, rank_metrics
from fbnas.search.jointnas.spaces import ARCH, sample_key
from fbnas.space import JointSpace, Sample


def verify_id(rank: int) -> str:
    return f"v{rank:04d}"


@dataclass
class VerifyResult:
    trials: dict[str, dict[str, Any]]  # id -> trial result of the verified proposals
    top: list[dict[str, Any]]  # result entries, best measured first
    check: dict[str, Any]  # the proposals' predicted vs measured accuracy
    seconds: float


def proposals(fine: FineResult, trained: list[Sample], n: int, space: JointSpace) -> list[Scored]:
    """The GA's ``n`` best pairs, at most one per architecture, none already trained (best first)."""
    seen = {sample_key(s) for s in trained}
    archs: set[str] = set()
    out: list[Scored] = []
    for s in fine.ga.archive:
        arch_key = sample_key(space.split(s.sample)[ARCH])
        if sample_key(s.sample) in seen or arch_key in archs:
            continue
        archs.add(arch_key)
        out.append(s)
        if len(out) == n:
            break
    return out


def run_verify(ctx: Context, coarse: CoarseResult, fine: FineResult, predictor: AccuracyPredictor,
               n: int, top_k: int) -> VerifyResult:
    """Train the GA's best ``n`` proposals on the proxy; rank every trained feasible pair by measured accuracy."""
    t0 = time.perf_counter()
    early = coarse.early_stop
    picked = proposals(fine, [t["sample"] for t in coarse.trials.values()], n, ctx.space)
    ctx.log(f"verification: training the fine stage's {len(picked)} best proposals on the proxy "
            f"(one per architecture), stopped at epoch {early}")
    tasks = [make_task(ctx, verify_id(r + 1), "verify", s.sample, early) for r, s in enumerate(picked)]
    trials = train_tasks(ctx, tasks, "verification")
    measured = [measured_acc(trials[t.trial_id], early) for t in tasks]
    predicted = predictor.predict([s.sample for s in picked]).tolist() if picked else []
    corr = {k: (None if v != v else v) for k, v in rank_metrics(predicted, measured).items()}  # NaN: < 3 pairs
    check = {"trials": [t.trial_id for t in tasks], "predicted": predicted, "measured": measured, **corr}
    pool = {**coarse.trials, **trials}
    feasible = {t: r for t, r in pool.items() if ctx.constraints.ok(r["sample"])}
    ranked = ranked_by_measured(feasible, early)[:top_k]
    members = predictor.predict_members([pool[t]["sample"] for t in ranked])
    top = []
    for rank, (tid, mean, std) in enumerate(zip(ranked, members.mean(0), members.std(0), strict=True), start=1):
        acc = measured_acc(pool[tid], early)
        scored = Scored(pool[tid]["sample"], acc, float(mean), -1)
        e = entry(ctx.space, ctx.constraints, ctx.base_recipe, scored, rank, ctx.num_classes, None)
        e.update({"predicted_std": float(std), "measured_acc": acc, "trial": tid, "role": pool[tid]["role"]})
        top.append(e)
    best = top[0]
    if measured:
        ctx.log(f"verification: proposals measured {100 * min(measured):.2f}-{100 * max(measured):.2f}% "
                f"(predicted {100 * min(check['predicted']):.2f}-{100 * max(check['predicted']):.2f}%)")
    ctx.log(f"verification: best measured pair {best['trial']} ({best['role']}) {100 * best['measured_acc']:.2f}%")
    return VerifyResult(trials, top, check, time.perf_counter() - t0)
