"""Optional end-to-end correction of the plain LUT sum, fitted on a few measured networks.

The plain sum (seed 000, eq. 3) misses what happens between blocks: framework overhead per network call,
cache misses on weights that an isolated block keeps hot, and (onnxruntime) operator fusion and per-run
overhead paid once per network instead of once per block. The correction models
``measured ~= overhead + sum_t scale_t * (sum of LUT ms of the blocks of op type t)``, with the scales
pulled towards 1 (ridge), fitted by least squares. It is stored in the DB and always reported beside the
plain sum, never instead of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RIDGE = 0.05  # strength of the pull towards scale 1 (relative to each type's mean contribution)
MIN_SHARE = 0.05  # smallest share of the plain sum that earns an op type its own scale


def op_type(desc: dict[str, Any]) -> str:
    """Grouping for per-type scales: family plus kernel size where it has one (ir_k3, ir_k5, conv, ...)."""
    k = desc.get("params", {}).get("k")
    return f"{desc['family']}_k{k}" if k is not None and desc["family"] == "ir" else str(desc["family"])


def type_sums(blocks: list[tuple[str, float]]) -> dict[str, float]:
    """Sum of LUT ms per op type for a network given as [(op_type, ms)]."""
    out: dict[str, float] = {}
    for t, ms in blocks:
        out[t] = out.get(t, 0.0) + float(ms)
    return out


def fit(per_net: list[dict[str, float]], measured: list[float]) -> dict[str, Any]:
    """Least-squares overhead + per-type scales (ridge towards 1); types constant across nets share the overhead."""
    types = sorted({t for d in per_net for t in d})
    x = np.array([[d.get(t, 0.0) for t in types] for d in per_net], dtype=np.float64)
    y = np.asarray(measured, dtype=np.float64)
    plain = x.sum(axis=1)
    # a type gets its own scale only if it varies across nets and carries >= MIN_SHARE of the time: small
    # contributions (identity skips) would otherwise soak up noise with absurd scales
    varying = [j for j in range(len(types)) if x[:, j].std() > 1e-3 * max(1e-9, abs(x[:, j].mean()))
               and x[:, j].mean() >= MIN_SHARE * plain.mean()]
    free = [types[j] for j in varying]
    a_cols = np.concatenate([np.ones((len(y), 1)), x[:, varying]], axis=1)
    target = y - plain  # fit the residual: overhead + (scale - 1) * x
    scale_ref = np.maximum(np.abs(x[:, varying]).mean(axis=0), 1e-9) if varying else np.zeros(0)
    penalty = np.sqrt(RIDGE * len(y)) * np.diag(scale_ref) if varying else np.zeros((0, 0))
    rows = np.concatenate([a_cols, np.concatenate([np.zeros((len(varying), 1)), penalty], axis=1)], axis=0)
    rhs = np.concatenate([target, np.zeros(len(varying))])
    coef, *_ = np.linalg.lstsq(rows, rhs, rcond=None)
    scales = {t: 1.0 for t in types}
    for j, t in enumerate(free):
        scales[t] = float(1.0 + coef[1 + j])
    params = {"overhead_ms": float(coef[0]), "scales": scales, "n_samples": len(y)}
    pred = np.array([apply(params, d) for d in per_net])
    params["fit_mape"] = float(np.mean(np.abs(pred - y) / y))
    params["plain_mape"] = float(np.mean(np.abs(plain - y) / y))
    return params


def apply(params: dict[str, Any], sums: dict[str, float]) -> float:
    scales = params.get("scales", {})
    return float(params.get("overhead_ms", 0.0) + sum(scales.get(t, 1.0) * v for t, v in sums.items()))
