"""What a search learned, as data and figures: the per-epoch architecture distributions
(``theta_history.json``), their heatmap, how decided the distribution is, and samples drawn from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fbnas.io import atomic_write


def theta_history(layer_names: list[str], candidate_names: list[list[str]], epochs: list[dict]) -> dict:
    """The ``theta_history.json`` document.

    ``epochs`` entries: ``{"epoch": e, "tau": t, "theta": [[..K_l..] per layer], "probs": [[..]]}``.
    """
    return {"layers": layer_names, "candidates": candidate_names, "epochs": epochs}


def save_probability_heatmap(path: str | Path, history: dict) -> Path | None:
    """One image: rows are (layer, candidate) pairs grouped by layer, columns are epochs, color is P.

    A single axis keeps this fast enough to rewrite after every epoch. Returns None if no epochs yet.
    """
    epochs = history.get("epochs") or []
    if not epochs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, cands = history["layers"], history["candidates"]
    grid = np.array([[p for layer_probs in e["probs"] for p in layer_probs] for e in epochs]).T  # [sum K, E]
    sizes = [len(c) for c in cands]
    starts = np.cumsum([0] + sizes)
    xs = [e["epoch"] for e in epochs]
    fig, ax = plt.subplots(figsize=(min(16.0, 8.0 + 0.12 * len(xs)), max(4.0, 0.045 * grid.shape[0] + 1.5)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=float(grid.max()),
                      interpolation="nearest", extent=(xs[0] - 0.5, xs[-1] + 0.5, grid.shape[0], 0))
    for y in starts[1:-1]:
        ax.axhline(y, color="white", linewidth=0.6)
    ax.set_yticks([(starts[i] + starts[i + 1]) / 2 for i in range(len(layers))])
    ax.set_yticklabels(layers, fontsize=6)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    same = all(c == cands[0] for c in cands)
    order = ", ".join(cands[0]) if same and cands else "see theta_history.json"
    ax.set_title(f"P(candidate) per layer over epochs\ncandidates top to bottom in each layer: {order}", fontsize=8)
    fig.colorbar(image, ax=ax, label="P(candidate)")
    fig.tight_layout()

    def write(f) -> None:
        fig.savefig(f, format="png", dpi=100)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


# ---- architectures --------------------------------------------------------------------------------


def sample_choices(probs: list[torch.Tensor], k: int, generator: torch.Generator) -> list[list[int]]:
    """``k`` choice vectors drawn independently per layer from ``probs`` (FBNet eq. 6)."""
    out = []
    for _ in range(k):
        out.append([int(torch.multinomial(p.double(), 1, generator=generator)) for p in probs])
    return out


def choices_probability(probs: list[torch.Tensor], choices: list[int]) -> float:
    """P_theta(a) = prod_l P_l(choice_l) (eq. 6)."""
    logp = sum(float(torch.log(p[int(c)].double())) for p, c in zip(probs, choices, strict=True))
    return float(np.exp(logp))


# Mean normalized entropy above which P_theta counts as "still near uniform" (the argmax is then close to a
# random pick among architectures of the same cost; e.g. max probability 0.18 of 9 candidates gives 0.98).
NEAR_UNIFORM_ENTROPY = 0.97


def distribution_summary(probs: list[torch.Tensor]) -> dict:
    """How decided P_theta is: per layer the argmax probability and entropy / log(K) (1: uniform, 0: one-hot),
    their mean, and ``near_uniform`` when the mean stays above :data:`NEAR_UNIFORM_ENTROPY`."""
    max_prob, norm_entropy = [], []
    for p in probs:
        p = p.detach().double().clamp_min(1e-12)
        k = p.numel()
        max_prob.append(float(p.max()))
        norm_entropy.append(float(-(p * p.log()).sum() / np.log(k)) if k > 1 else 0.0)
    mean = float(np.mean(norm_entropy)) if norm_entropy else 0.0
    return {"max_prob": max_prob, "normalized_entropy": norm_entropy, "mean_normalized_entropy": mean,
            "near_uniform": mean > NEAR_UNIFORM_ENTROPY}
