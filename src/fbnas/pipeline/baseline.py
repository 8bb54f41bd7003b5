"""The random baseline of a search: architectures drawn uniformly from the same space whose cost (latency-table
ms, or the search's cost) lies within a window of the found architecture's.

It answers the question practitioners ask of every NAS result: does the search beat a random net of the same
latency? The draws are keyed by the seed (:mod:`fbnas.seeding`), so a pipeline resumed or rerun picks the same
nets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fbnas.cost.terms import TermCostModel
from fbnas.seeding import derive_seed


def matched_random_choices(cost_model: TermCostModel, sizes: list[int], target: float, num: int, tolerance: float,
                           seed: int, batch: int = 20_000, rounds: int = 200) -> tuple[list[list[int]], bool]:
    """``num`` distinct uniform architectures (option per dimension) whose cost is within ``tolerance`` of
    ``target``; when too few exist in ``rounds * batch`` draws, the closest ones. Returns (choices, all within)."""
    rng = np.random.default_rng(derive_seed(seed, "baseline"))
    single = all(len(dims) == 1 for dims, _ in cost_model.terms)
    picked: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    closest: list[tuple[float, list[int]]] = []
    for _ in range(rounds):
        ch = np.stack([rng.integers(0, k, batch) for k in sizes], axis=1)
        if single:
            costs = np.full(batch, cost_model.fixed)
            for (d,), table in cost_model.terms:
                costs += table.numpy()[ch[:, d]]
        else:
            costs = np.array([cost_model.of_choices(list(row)) for row in ch[:2000]])
            ch = ch[:2000]
        rel = np.abs(costs / target - 1.0)
        for i in np.nonzero(rel <= tolerance)[0]:
            key = tuple(int(c) for c in ch[i])
            if key not in seen and len(picked) < num:
                seen.add(key)
                picked.append(list(key))
        for i in np.argsort(rel)[:num]:
            closest.append((float(rel[i]), [int(c) for c in ch[i]]))
        if len(picked) >= num:
            return picked, True
    closest.sort(key=lambda t: t[0])
    for _, c in closest:
        if len(picked) >= num:
            break
        if tuple(c) not in seen:
            seen.add(tuple(c))
            picked.append(c)
    return picked, False


def baseline_entries(space, cost_model: TermCostModel, found_choices: list[int], num: int, tolerance: float,
                     seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The baseline architectures as result entries (``sample``, ``arch``, ``cost``) and how they were matched."""
    target = cost_model.of_choices(found_choices)
    chosen, within = matched_random_choices(cost_model, space.num_choices(), target, num, tolerance, seed)
    entries = []
    for i, ch in enumerate(chosen):
        sample = space.from_indices(ch)
        entries.append({"name": f"random{i}", "sample": sample, "choices": ch,
                        "arch": space.build(sample, name=f"random{i}").arch.to_dict(),
                        "cost": cost_model.of_choices(ch)})
    info = {"cost_kind": cost_model.kind, "unit": cost_model.unit, "found_cost": target, "tolerance": tolerance,
            "all_within_tolerance": within, "num": num}
    return entries, info
