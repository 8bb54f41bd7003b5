"""The most probable architecture of P(A | alpha) whose cost lies in a band ``[lo, hi]`` (FP-NAS's found
architecture given a target, ``fpnas.select: within_target``).

Layers are independent under P(A | alpha), but the cost is not a sum over layers: a block's MACs depend on its
layer's variables and on the previous layer's channels (the terms of :class:`fbnas.cost.terms.TermCostModel`).
The search goes layer by layer (the distribution's groups, in order) over partial architectures, each with its
log-probability and the cost of the terms whose dimensions are all chosen:

* a partial architecture that can no longer reach the band (its cost plus the smallest cost of the open terms is
  above ``hi``, or plus their largest cost below ``lo``) is dropped;
* of the rest, the ``per_bin`` most probable of every cost bin (``bins`` bins over ``[0, hi]``) are kept, so that
  cheap and expensive prefixes both survive (a beam by probability alone keeps only the prefixes of the
  unconstrained most probable architecture).

The most probable complete architecture inside the band is returned, or None when none was found. When the
unconstrained most probable architecture is inside the band it is the answer (exactly).
"""

from __future__ import annotations

import torch

from fbnas.cost.terms import TermCostModel
from fbnas.search.distribution import ArchDistribution


def _tuples(sizes: list[int]) -> torch.Tensor:
    """Every tuple of option indices of a group, row-major (the order of the group's flattened log-probs)."""
    grids = torch.meshgrid(*[torch.arange(s) for s in sizes], indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def most_probable_within(dist: ArchDistribution, cost_model: TermCostModel, lo: float, hi: float, *,
                         bins: int = 256, per_bin: int = 8) -> list[int] | None:
    """``argmax_A P(A | alpha)`` subject to ``lo <= cost(A) <= hi`` (a binned beam search; see the module)."""
    best = dist.most_probable()
    if lo <= cost_model.of_choices(best) <= hi:
        return best
    groups = dist.groups
    position = {d: i for i, g in enumerate(groups) for d in g}
    # a term is added once the last of its dimensions is chosen; open terms bound the cost still to come
    closes = [max(position[d] for d in dims) for dims, _ in cost_model.terms]
    t_min = [float(t.min()) for _, t in cost_model.terms]
    t_max = [float(t.max()) for _, t in cost_model.terms]
    with torch.no_grad():
        logps = [lp.double() for lp in dist.group_log_probs()]
    n_dims = len(dist.sizes)
    choices = torch.full((1, n_dims), -1, dtype=torch.long)
    logp = torch.zeros(1, dtype=torch.float64)
    cost = torch.full((1,), float(cost_model.fixed), dtype=torch.float64)
    for i, g in enumerate(groups):
        tup = _tuples([dist.sizes[d] for d in g])
        b, t = choices.shape[0], tup.shape[0]
        choices = choices.repeat_interleave(t, dim=0)
        choices[:, g] = tup.repeat(b, 1)
        logp = logp.repeat_interleave(t) + logps[i].repeat(b)
        cost = cost.repeat_interleave(t)
        for (dims, table), c in zip(cost_model.terms, closes, strict=True):
            if c == i:
                cost = cost + table.double()[tuple(choices[:, d] for d in dims)]
        rest_min = sum(m for m, c in zip(t_min, closes, strict=True) if c > i)
        rest_max = sum(m for m, c in zip(t_max, closes, strict=True) if c > i)
        keep = (cost + rest_min <= hi) & (cost + rest_max >= lo)
        if not bool(keep.any()):
            return None
        choices, logp, cost = choices[keep], logp[keep], cost[keep]
        if i < len(groups) - 1 and choices.shape[0] > bins * per_bin:
            order = torch.argsort(logp, descending=True)
            bin_id = torch.clamp((cost[order] / hi * bins).long(), 0, bins - 1)
            by_bin = torch.argsort(bin_id, stable=True)  # within a bin, still by probability
            sorted_bins = bin_id[by_bin]
            first = torch.searchsorted(sorted_bins, sorted_bins, right=False)
            rank = torch.arange(len(sorted_bins)) - first
            chosen = order[by_bin[rank < per_bin]]
            choices, logp, cost = choices[chosen], logp[chosen], cost[chosen]
    inside = (cost >= lo) & (cost <= hi)
    if not bool(inside.any()):
        return None
    idx = torch.nonzero(inside).flatten()
    top = idx[torch.argmax(logp[idx])]
    return [int(x) for x in choices[top]]
