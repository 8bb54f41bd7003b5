"""FP-NAS's run files beside the shared ones: ``fpnas_trace.json`` (K, H and the samples' CE of every step, rewritten
after every epoch from the checkpoint's state), and at the end of the search ``plots/k_entropy.png`` (K and H per
step) and ``plots/marginals.png`` (every variable's marginals over epochs, from ``theta_history.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from fbnas.io import atomic_write, atomic_write_json
from fbnas.runs import RunFolder

COLUMNS = ["phase", "step", "k", "entropy", "ce", "joint"]  # phase 0: weight step, 1: architecture step


def write_trace(folder: RunFolder, trace: list[list[float]], switch_epoch: int | None) -> None:
    atomic_write_json(folder.file("fpnas_trace.json"), {"columns": COLUMNS, "rows": trace,
                                                        "switch_epoch": switch_epoch})


def write_plots(folder: RunFolder, trace: list[list[float]]) -> None:
    if trace:
        save_k_entropy_plot(folder.plot("k_entropy.png"), trace)
    history = folder.file("theta_history.json")
    if history.exists():
        save_marginals_plot(folder.plot("marginals.png"), json.loads(history.read_text(encoding="utf-8")))


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def save_k_entropy_plot(path: str | Path, trace: list[list[float]]) -> Path:
    """K (left axis) and H in nats (right axis) per step, weight and architecture steps apart; JD steps shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, phase, title in ((axes[0], 0, "weight steps"), (axes[1], 1, "architecture steps")):
        rows = [r for r in trace if int(r[0]) == phase]
        xs = list(range(len(rows)))
        ax.step(xs, [r[2] for r in rows], where="post", color="tab:blue", label="K")
        ax.set_xlabel(f"{title} (in order)")
        ax.set_title(title, fontsize=9)
        h_ax = ax.twinx()
        h_ax.plot(xs, [r[3] for r in rows], color="tab:orange", label="H (nats)")
        h_ax.set_ylabel("H (nats)", color="tab:orange")
        joint = [i for i, r in enumerate(rows) if r[5]]
        if joint:
            ax.axvspan(joint[0], xs[-1], color="0.9", zorder=0, label="JD")
    axes[0].set_ylabel("K (architectures per step)", color="tab:blue")
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle("FP-NAS: adaptive sample count K = clamp(ceil(lambda H)) and entropy H", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_marginals_plot(path: str | Path, history: dict) -> Path | None:
    """One panel per search variable: the probability of each option over epochs."""
    epochs = history.get("epochs") or []
    if not epochs:
        return None
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, labels = history["layers"], history["candidates"]
    cols = min(6, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 1.9 * rows), squeeze=False, sharex=True, sharey=True)
    xs = [e["epoch"] for e in epochs]
    for i, (name, opts) in enumerate(zip(names, labels, strict=True)):
        ax = axes[i // cols][i % cols]
        for j, opt in enumerate(opts):
            ax.plot(xs, [e["probs"][i][j] for e in epochs], label=str(opt), linewidth=1.2)
        ax.set_title(name, fontsize=7)
        ax.set_ylim(-0.02, 1.05)
        ax.tick_params(labelsize=6)
        if len(opts) > 1:
            ax.legend(fontsize=5, loc="upper left", frameon=False)
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("FP-NAS: per-variable marginals of P(A | alpha) over epochs", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.05, top=0.92, wspace=0.08, hspace=0.35)
    return _save(fig, path)
