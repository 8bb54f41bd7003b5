"""Entries of a search's result.json: an architecture as a named sample, its arch spec and its costs; and the
architectures sampled from the learned distribution (seed 000: FBNet trains 6 samples of P_theta)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fbnas.search.history import choices_probability, sample_choices
from fbnas.search.protocols import CostModel
from fbnas.seeding import STREAMS, step_generator


def describe_arch(space, choices: list[int], num_classes: int, name: str,
                  latency_fn: Callable[[Any], float] | None = None) -> dict[str, Any]:
    """``sample`` (dimension name -> value), ``arch`` (the spec it builds), choices, their names, MACs, params and
    LUT latency (None without a table)."""
    from fbnas.cost.counting import count

    sample = space.from_indices(choices)
    spec = space.build(sample, name=name).arch
    report = count(spec, num_classes=num_classes)
    return {"sample": sample, "arch": spec.to_dict(), "choices": [int(c) for c in choices],
            "choice_names": space.choice_names(choices),
            "latency_ms": None if latency_fn is None else float(latency_fn(spec)),
            "macs": int(report.macs), "params": int(report.params)}


def sampled_archs(space, probs, k: int, seed: int, num_classes: int, prefix: str, cost_model: CostModel,
                  latency_fn: Callable[[Any], float] | None = None) -> list[dict[str, Any]]:
    """``k`` architectures drawn from the per-dimension distributions ``probs`` (keyed by the run's seed)."""
    out = []
    for i, ch in enumerate(sample_choices(probs, k, step_generator(seed, 0, STREAMS["samples"]))):
        entry = describe_arch(space, ch, num_classes, f"{prefix}_sample{i}", latency_fn)
        entry["probability"] = choices_probability(probs, ch)
        entry["cost"] = cost_model.of_choices(ch)
        out.append(entry)
    return out
