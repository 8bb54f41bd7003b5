"""Entries of a search's result.json: an architecture as a named sample, its arch spec and its costs; and the
architectures sampled from the learned distribution (seed 000: FBNet trains 6 samples of P_theta)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fbnas.errors import FbnasError
from fbnas.search.caps import Cap, log_probs, most_probable_under_caps, sample_under_caps
from fbnas.search.history import choices_probability, sample_choices
from fbnas.search.protocols import CostModel
from fbnas.seeding import STREAMS, numpy_rng, step_generator, step_seed

CAP_UNITS = {"latency_ms": "ms", "macs": "MMACs", "params": "M params"}


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


def caps_for(space, constraints: dict[str, float], num_classes: int, lut=None) -> list[Cap]:
    """The hard caps of a search config (``constraints``) as per-dimension cost tables of ``space``."""
    from fbnas.cost.terms import analytic_cost_model

    caps = []
    for name, limit in constraints.items():
        if name == "latency_ms":
            if lut is None:
                raise FbnasError("constraints.latency_ms: needs a latency table (lut.path)")
            model = lut.cost_model(space)
        else:
            model = analytic_cost_model(space, name, num_classes)
        tables = [None] * len(space.dims)
        for dims, table in model.terms:
            if len(dims) != 1:
                raise FbnasError(f"constraints.{name}: hard caps need costs that add up per dimension (a layer-wise "
                                 f"space); {space.name}'s blocks depend on several dimensions")
            tables[dims[0]] = table.numpy().astype("float64")
        costs = [t if t is not None else np.zeros(d.size) for t, d in zip(tables, space.dims, strict=True)]
        caps.append(Cap(name, float(limit), costs, float(model.fixed), CAP_UNITS[name]))
    return caps


def best_choices(probs, caps: list[Cap]) -> list[int]:
    """The most probable architecture, under the caps when there are any (exact, :mod:`fbnas.search.caps`)."""
    if not caps:
        return [int(p.argmax()) for p in probs]
    return most_probable_under_caps(log_probs([p.double().numpy() for p in probs]), caps)


def sampled_archs(space, probs, k: int, seed: int, num_classes: int, prefix: str, cost_model: CostModel,
                  latency_fn: Callable[[Any], float] | None = None, caps: list[Cap] | None = None
                  ) -> list[dict[str, Any]]:
    """``k`` architectures drawn from the per-dimension distributions ``probs`` (keyed by the run's seed),
    restricted to ``caps`` when given."""
    out = []
    if caps:
        rng = numpy_rng(step_seed(seed, 0, STREAMS["samples"]))
        drawn = sample_under_caps([p.double().numpy() for p in probs], caps, k, rng)
    else:
        drawn = sample_choices(probs, k, step_generator(seed, 0, STREAMS["samples"]))
    for i, ch in enumerate(drawn):
        entry = describe_arch(space, ch, num_classes, f"{prefix}_sample{i}", latency_fn)
        entry["probability"] = choices_probability(probs, ch)
        entry["cost"] = cost_model.of_choices(ch)
        out.append(entry)
    return out


def lut_label(result: dict) -> str:
    """``LUT`` with the table's backend and dtype when it is not fp32 (``LUT, onnxruntime int8``)."""
    lut = result.get("lut") or {}
    if lut.get("dtype", "float32") == "float32":
        return "LUT"
    return f"LUT, {lut.get('backend')} {lut['dtype']}"
