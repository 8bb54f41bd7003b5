"""The early-stopping rule of JointNAS's coarse stage (seed 000, "FBNet V3"): train a few candidates for the full
proxy budget, rank them by their accuracy after every epoch and by their final accuracy, and stop later
candidates at the first epoch whose rank correlation with the final ranking reaches the threshold (0.92);
the final epoch always reaches it (it *is* the final ranking).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fbnas.errors import FbnasError


def rank_correlation_by_epoch(curves: Sequence[Sequence[float]], method: str = "kendall") -> list[float]:
    """Per epoch e (1-based position e-1): the rank correlation between the candidates' accuracy after e epochs
    and their final accuracy (Kendall's tau-b, or Spearman's rho). Undefined correlations (a constant epoch) are 0."""
    from scipy.stats import kendalltau, spearmanr

    if len(curves) < 3:
        raise FbnasError(f"jointnas.calibration.candidates: the rank correlation needs >= 3 curves, got {len(curves)}")
    lengths = {len(c) for c in curves}
    if len(lengths) != 1 or 0 in lengths:
        raise FbnasError(f"calibration: every curve needs the same number of epochs, got lengths {sorted(lengths)}")
    epochs = lengths.pop()
    final = [c[-1] for c in curves]
    out = []
    for e in range(epochs):
        at = [c[e] for c in curves]
        if e == epochs - 1:
            out.append(1.0)
            continue
        value = kendalltau(at, final).statistic if method == "kendall" else spearmanr(at, final).statistic
        out.append(float(value) if value is not None and math.isfinite(value) else 0.0)
    return out


def early_stop_epoch(curves: Sequence[Sequence[float]], threshold: float = 0.92, method: str = "kendall"
                     ) -> tuple[int, list[float]]:
    """(the first epoch, 1-based, whose rank correlation with the final accuracy is >= ``threshold``; the
    correlation of every epoch)."""
    corr = rank_correlation_by_epoch(curves, method)
    for e, c in enumerate(corr):
        if c >= threshold - 1e-12:
            return e + 1, corr
    return len(corr), corr  # unreachable: the last epoch correlates perfectly with itself
