"""End-to-end checks of a LUT: sample architectures, measure whole networks, compare with the plain sum.

Samples come from (seed, step, stream) so runs are reproducible; the correction is fitted on stream 1
and validation draws from stream 0, skipping any architecture the correction was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fbnas.errors import FbnasError
from fbnas.lut import correction
from fbnas.lut.measure import Runner, build_module, input_shape
from fbnas.lut.predict import (
    LatencyTable,
    fit_build_correction,
    memory_format,
    reference_entries,
    sample_archs,
    term_entries,
)
from fbnas.lut.signature import Entry, unique_entries
from fbnas.nn.model import FBNetModel
from fbnas.seeding import STREAMS
from fbnas.space.base import DimSpace, Sample

FIT_STREAM, VALIDATE_STREAM = STREAMS["lut_fit"], STREAMS["lut_validate"]


def anchor_entries(space: DimSpace, lut: LatencyTable, n: int = 8) -> list[Entry]:
    """A few table entries spread over the space (small to large) to re-time beside the networks."""
    terms = term_entries(space, lut.num_classes or 1000, lut.batch, lut.channels_last, lut.dtype)
    fixed = [e for dims, t in terms if not dims for e in t.values()]
    searched = [e for dims, t in terms if dims for e in t.values() if e.family != "skip"]
    pool = unique_entries(fixed + searched)
    step = max(1, len(pool) // n)
    return pool[::step][:n]


@dataclass
class NetworkTimes:
    """End-to-end times of sampled networks: raw, and compensated for the machine's speed drift."""

    raw_ms: list[float]
    compensated_ms: list[float]
    load_factor: float  # anchor blocks now / when the table was built (above 1: slower now)
    level_factor: float | None  # reference networks now / during the build; None: the table has none


def measure_networks(space: DimSpace, samples: list[Sample], lut: LatencyTable, num_classes: int,
                     rounds: int = 15, anchors: list[Entry] = ()) -> NetworkTimes:
    """Statistic (ms) of each whole network (batch ``lut.batch``, eval) with the LUT's backend and settings.

    The ``anchors`` (table entries) are re-timed right before every timed call of a network and each call is
    divided by the machine's speed at that moment relative to the whole run (``target_script.measure_paired``).
    The table's reference networks (timed during the build, interleaved with the blocks) are measured the same
    way; their times now over their times then (``level_factor``) put the compensated times on the build's
    speed, which is the speed the table's entries describe.
    """
    runner = Runner(lut.backend, lut.threads, lut.channels_last, lut.statistic, lut.dtype)
    refs = reference_entries(space, num_classes, lut.batch, lut.channels_last, dtype=lut.dtype)
    stored = lut.store.get([e.key for e in list(anchors) + refs], lut.backend, lut.threads, lut.statistic,
                           device=lut.device)
    anchor_items = {e.key: (build_module(e.desc), input_shape(e.desc)) for e in anchors if e.key in stored}
    anchor_ms = sum(float(stored[k]["value_ms"]) for k in anchor_items)
    items = {}
    for j, sample in enumerate(samples):
        arch = _arch(space, sample)
        model = FBNetModel(arch, num_classes).eval()
        items[f"net{j}"] = (model, [lut.batch, arch.in_channels, arch.input_size, arch.input_size])
    stored_refs = [e for e in refs if e.key in stored]
    items.update({e.key: (build_module(e.desc), input_shape(e.desc)) for e in stored_refs})
    keys = [f"net{j}" for j in range(len(samples))]
    if not anchor_items:
        stats = runner.measure(items, rounds=rounds)
        comp = {k: float(v["value_ms"]) for k, v in stats.items()}
        raw, load = dict(comp), 1.0
    else:
        stats = runner.measure_paired(items, anchor_items, anchor_ms, rounds=rounds)
        comp = {k: float(v["compensated_ms"]) for k, v in stats.items()}
        raw = {k: float(v["value_ms"]) for k, v in stats.items()}
        load = float(np.median([float(stats[k]["speed_factor"]) for k in keys]))
    level = (float(np.median([comp[e.key] / float(stored[e.key]["value_ms"]) for e in stored_refs]))
             if stored_refs else None)
    return NetworkTimes([raw[k] for k in keys], [comp[k] / (level or 1.0) for k in keys], load, level)


def metrics(pred: list[float], meas: list[float]) -> dict[str, float]:
    from scipy import stats

    p, m = np.asarray(pred, dtype=np.float64), np.asarray(meas, dtype=np.float64)
    rel = np.abs(p - m) / m
    return {"spearman": float(stats.spearmanr(p, m).statistic) if len(p) > 2 else math.nan,
            "pearson": float(stats.pearsonr(p, m).statistic) if len(p) > 2 else math.nan,
            "mape": float(rel.mean()), "within_10pct": float((rel <= 0.10).mean())}


def _arch(space: DimSpace, sample: Sample):
    arch = space.build(sample).arch
    assert arch is not None
    return arch


def _classes(lut: LatencyTable, space: DimSpace, num_classes: int | None) -> int:
    if num_classes is not None:
        return num_classes
    return lut.classes_for(next(iter(term_entries(space, 1000, lut.batch, lut.channels_last,
                                                  lut.dtype)[-1][1].values())))


def _space_info(space: DimSpace) -> dict[str, Any]:
    return {"space": space.name, "input_size": _arch(space, space.default_sample()).input_size}


def fit_correction(lut: LatencyTable, space: DimSpace, samples: int, seed: int = 0,
                   num_classes: int | None = None, compensate_drift: bool = True, rounds: int = 15) -> dict[str, Any]:
    """Measure ``samples`` networks (fit stream), fit overhead + per-type scales, store them in the DB.

    With ``compensate_drift`` (default) the fit uses the drift-compensated times (see :func:`measure_networks`),
    so a correction fitted while the shared machine ran slow does not learn that moment's slowdown.
    """
    if lut.device != lut.here:
        raise FbnasError(f"{lut.path}: fit-correction measures networks on this machine, so it needs this "
                         "machine's rows, not --allow-fingerprint's")
    classes = _classes(lut, space, num_classes)
    lut.num_classes = classes
    lut.cost_model(space)  # every candidate present? else one error naming the `lut build --space` command
    chosen = sample_archs(space, samples, seed, FIT_STREAM)
    preds = [lut.predict(_arch(space, c)) for c in chosen]  # fails early (with the build command) if incomplete
    times = measure_networks(space, chosen, lut, classes, rounds=rounds, anchors=anchor_entries(space, lut))
    measured = times.compensated_ms if compensate_drift else times.raw_ms
    params = correction.fit([p.by_type for p in preds], measured)
    params.update({"source": "fit-correction", "dtype": lut.dtype, "load_factor": times.load_factor,
                   "level_factor": times.level_factor,
                   "drift_compensated": compensate_drift,
                   **_space_info(space), "seed": seed, "stream": FIT_STREAM,
                   "fit_samples": chosen, "num_classes": classes})
    lut.store.set_correction(lut.backend, lut.threads, memory_format(lut.channels_last), params, lut.statistic,
                             lut.device)
    lut.correction = params
    return {k: v for k, v in params.items() if k != "fit_samples"}


def validate(lut: LatencyTable, space: DimSpace, samples: int, seed: int = 0, num_classes: int | None = None,
             plot: str | Path | None = None, compensate_drift: bool = True, rounds: int = 15) -> dict[str, Any]:
    """Spearman/Pearson/MAPE/within-10% of the plain sum (and the correction, if any) vs measured networks.

    With ``compensate_drift`` (default) the top-level metrics compare with the drift-compensated times (each
    timed call divided by the machine's speed at that moment, then put on the build's speed by the reference
    networks, :func:`measure_networks`); the metrics against the raw times are always reported under ``raw``,
    with ``load_factor`` and ``level_factor``.
    """
    if lut.device != lut.here:
        raise FbnasError(f"{lut.path}: fit-correction measures networks on this machine, so it needs this "
                         "machine's rows, not --allow-fingerprint's")
    classes = _classes(lut, space, num_classes)
    lut.num_classes = classes
    lut.cost_model(space)  # every candidate present? else one error naming the `lut build --space` command
    if lut.correction is None and not lut.store.readonly:  # a table built before build-time corrections
        lut.correction = fit_build_correction(lut.store, space, lut.backend, lut.threads, lut.statistic, classes,
                                              lut.batch, lut.channels_last, lut.dtype)
    fitted = frozenset(tuple(c.values()) for c in (lut.correction or {}).get("fit_samples", []) if isinstance(c, dict))
    chosen = sample_archs(space, samples, seed, VALIDATE_STREAM, exclude=fitted)
    preds = [lut.predict(_arch(space, c)) for c in chosen]
    times = measure_networks(space, chosen, lut, classes, rounds=rounds, anchors=anchor_entries(space, lut))
    measured = times.compensated_ms if compensate_drift else times.raw_ms
    plain = [p.total_ms for p in preds]
    result: dict[str, Any] = {**metrics(plain, measured), "n": len(chosen), "backend": lut.backend,
                              "threads": lut.threads, "statistic": lut.statistic, "dtype": lut.dtype,
                              **_space_info(space),
                              "seed": seed, "drift_compensated": compensate_drift,
                              "load_factor": times.load_factor, "level_factor": times.level_factor}
    corrected = None
    if lut.correction and all(p.corrected_ms is not None for p in preds):
        corrected = [float(p.corrected_ms) for p in preds]  # type: ignore[arg-type]
        result["corrected"] = metrics(corrected, measured)
        c = lut.correction or {}
        result["correction"] = {"source": c.get("source", "fit-correction"), "n_samples": c.get("n_samples"),
                                "overhead_ms": c.get("overhead_ms"), "scales": c.get("scales")}
    result["raw"] = {"plain": metrics(plain, times.raw_ms)}
    if corrected:
        result["raw"]["corrected"] = metrics(corrected, times.raw_ms)
    result["samples"] = [{"sample": c, "predicted_ms": p, "measured_ms": m, "raw_ms": r,
                          **({"corrected_ms": corrected[i]} if corrected else {})}
                         for i, (c, p, m, r) in enumerate(zip(chosen, plain, measured, times.raw_ms, strict=True))]
    if plot:
        kind = "drift-compensated" if compensate_drift else "raw"
        write_plot(plot, plain, measured, corrected, f"{space.name} @{result['input_size']}, {lut.backend} "
                   f"{lut.threads} thread(s), {kind} times", result)
        result["plot"] = str(plot)
    return result


def write_plot(path: str | Path, plain: list[float], measured: list[float], corrected: list[float] | None,
               title: str, stats: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fbnas.io import atomic_write

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(measured, plain, s=18, label=f"plain sum (rho={stats['spearman']:.3f}, "
                                           f"{100 * stats['within_10pct']:.0f}% within 10%)")
    if corrected is not None:
        c = stats["corrected"]
        ax.scatter(measured, corrected, s=18, marker="x",
                   label=f"corrected (rho={c['spearman']:.3f}, {100 * c['within_10pct']:.0f}% within 10%)")
    lo = 0.9 * min(measured + plain + (corrected or []))
    hi = 1.1 * max(measured + plain + (corrected or []))
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.plot(xs, 1.1 * xs, "k:", lw=0.6)
    ax.plot(xs, 0.9 * xs, "k:", lw=0.6)
    ax.set_xlabel("measured end to end (ms)")
    ax.set_ylabel("predicted from LUT (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
