"""JointNAS's figures (``DIR/plots/``): predicted vs measured accuracy of held-out trials, the rank correlation by
epoch behind the early-stopping choice, and accuracy vs cost of every trial with the GA's front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PREDICTED_VS_MEASURED = "predicted_vs_measured.png"
EARLY_STOP = "early_stop.png"
ACCURACY_VS_COST = "accuracy_vs_cost.png"


def _figure(ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.2), squeeze=False)
    return plt, fig, list(axes[0])


def _save(plt, fig, path: Path) -> Path:
    import io

    from fbnas.io import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def predicted_vs_measured(path: Path, ahead: Sequence[dict[str, Any]], fitted: tuple[list[float], list[float]] | None,
                          title: str = "") -> Path:
    """Each coarse batch as the predictor fitted *before* it predicted it (held out), and the final fit."""
    plt, fig, (ax,) = _figure()
    if fitted is not None and fitted[0]:
        ax.scatter([100 * m for m in fitted[1]], [100 * p for p in fitted[0]], s=12, c="0.75",
                   label="final predictor, its training trials")
    pts_m, pts_p = [], []
    for b in ahead:
        pts_m += b["measured"]
        pts_p += b["predicted"]
        ax.scatter([100 * m for m in b["measured"]], [100 * p for p in b["predicted"]], s=22,
                   label=f"iteration {b['iteration']} (held out)"
                   + ("" if b.get("spearman") is None else f": rho {b['spearman']:.2f}"))
    allv = [100 * v for v in pts_m + pts_p + (list(fitted[0]) + list(fitted[1]) if fitted else [])]
    if allv:
        lo, hi = min(allv), max(allv)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("measured proxy accuracy (%)")
    ax.set_ylabel("predicted proxy accuracy (%)")
    ax.set_title(title or "predictor: predicted vs measured")
    ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, path)


def early_stop(path: Path, correlation: Sequence[float] | None, chosen: int, threshold: float,
               curves: Sequence[Sequence[float]] = ()) -> Path:
    """Kendall tau of each epoch's ranking with the final one (calibration), and the calibration curves."""
    plt, fig, (ax, ax2) = _figure(2)
    if correlation:
        epochs = list(range(1, len(correlation) + 1))
        ax.plot(epochs, correlation, "o-", label="Kendall tau vs final accuracy")
        ax.axhline(threshold, color="r", ls="--", lw=0.8, label=f"threshold {threshold:g}")
        ax.set_xticks(epochs)
    ax.axvline(chosen, color="g", lw=1.0, label=f"early-stopping epoch {chosen}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("rank correlation")
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("early-stopping calibration")
    for c in curves:
        ax2.plot(range(1, len(c) + 1), [100 * v for v in c], "o-", lw=0.8, ms=3)
    ax2.axvline(chosen, color="g", lw=1.0)
    if curves:
        ax2.set_xticks(list(range(1, max(len(c) for c in curves) + 1)))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy (%)")
    ax2.set_title("calibration candidates")
    return _save(plt, fig, path)


def pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) points no other point beats on both (lower cost, higher accuracy), by cost."""
    front, best = [], -float("inf")
    for c, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if a > best:
            front.append((c, a))
            best = a
    return front


def accuracy_vs_cost(path: Path, trials: Sequence[dict[str, Any]], archive: Sequence[dict[str, Any]],
                     top: Sequence[dict[str, Any]], caps: dict[str, float]) -> Path:
    """Measured proxy accuracy of every trial and the GA's predicted front, against MACs (and LUT latency)."""
    kinds = ["macs"] + (["latency_ms"] if any(t.get("latency_ms") is not None for t in trials) else [])
    plt, fig, axes = _figure(len(kinds))
    labels = {"macs": "MMACs", "latency_ms": "latency (ms, table)"}
    for ax, kind in zip(axes, kinds, strict=True):
        tx = [t[kind] for t in trials if t.get(kind) is not None]
        ty = [100 * t["acc"] for t in trials if t.get(kind) is not None]
        ax.scatter(tx, ty, s=14, label="trials (measured)")
        front = pareto([(a[kind], a["predicted_acc"]) for a in archive if a.get(kind) is not None])
        if front:
            ax.plot([c for c, _ in front], [100 * a for _, a in front], "r.-", lw=0.8, ms=3,
                    label="GA front (predicted)")
        measured = all(t.get("measured_acc") is not None for t in top)
        acc_key = "measured_acc" if measured else "predicted_acc"
        ax.scatter([t[kind] for t in top if t.get(kind) is not None],
                   [100 * t[acc_key] for t in top if t.get(kind) is not None], marker="*", s=80, c="k",
                   label=f"top-K ({'measured' if measured else 'predicted'})", zorder=3)
        if kind in caps:
            ax.axvline(caps[kind], color="0.4", ls="--", lw=0.8, label=f"cap {caps[kind]:g}")
        ax.set_xlabel(labels[kind])
        ax.set_ylabel("proxy accuracy (%)")
        ax.legend(fontsize=7)
    axes[0].set_title("accuracy vs cost")
    return _save(plt, fig, path)
