"""A space's cost as a sum of per-position tables, differentiable in the architecture weights.

Every position of a space's network depends on a few dimensions (``Space.cost_terms``): a layer-wise layer
on its own choice, a masked block on the resolution and its input, hidden and output widths, a fixed block
on none. With the value of every placed block (its analytic MACs or params, or its latency-table ms), the
cost of an architecture is the sum of one table entry per position (FBNet eq. 3), and its expectation under
independent per-dimension weights ``m`` is the multilinear form

    E[cost] = fixed + sum_terms sum_{i, j, ...} m_{d1, i} m_{d2, j} ... table[i, j, ...]

(eq. 9 for one dimension per term). One-hot weights give the architecture's exact cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fbnas.cost.placement import Placed
from fbnas.errors import FbnasError

COST_UNITS = {"latency": "ms", "macs": "MMACs", "params": "M params"}


@dataclass
class TermCostModel:
    """``terms[t] = (dimension indices, table)`` plus the summed cost of the fixed positions, in ``unit``."""

    kind: str
    unit: str
    terms: list[tuple[tuple[int, ...], torch.Tensor]]
    fixed: float

    def expected(self, weights: list[torch.Tensor]) -> torch.Tensor:
        """The multilinear expectation; scalar for per-batch weights, ``[B]`` for per-sample ``[B, K]`` ones."""
        total = None
        for dims, table in self.terms:
            if len(dims) == 1:
                w = weights[dims[0]]
                term = w @ table.to(w.dtype)
            else:
                term = _contract(table, [weights[d] for d in dims])
            total = term if total is None else total + term
        if total is None:
            return torch.tensor(self.fixed)
        return total + self.fixed

    def of_choices(self, choices: list[int]) -> float:
        """The exact cost of one architecture (option index per dimension)."""
        return self.fixed + sum(float(table[tuple(int(choices[d]) for d in dims)]) for dims, table in self.terms)

    def min_max(self) -> tuple[float, float]:
        """Exact for terms of one dimension each (layer-wise); bounds where terms share dimensions."""
        lo = self.fixed + sum(float(t.min()) for _, t in self.terms)
        hi = self.fixed + sum(float(t.max()) for _, t in self.terms)
        return lo, hi


def _contract(table: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """``sum_{i,j,..} table[i,j,..] w0[i] w1[j] ..``; with per-sample weights ``[B, K]`` one value per sample."""
    out = table.to(weights[0].dtype)
    if weights[0].dim() == 1:
        for w in weights:
            out = torch.tensordot(w, out, dims=([0], [0]))
        return out
    out = torch.einsum("bk,k...->b...", weights[0], out)
    for w in weights[1:]:
        out = torch.einsum("bk,bk...->b...", w, out)
    return out


def term_cost_model(space, kind: str, num_classes: int, value: Callable[[Placed], float],
                    unit: str | None = None, scale_fixed: Callable[[list[Placed]], float] | None = None
                    ) -> TermCostModel:
    """Tables of ``value(placed block)`` over ``space.cost_terms``; fixed positions summed in network order
    (``scale_fixed`` sums them exactly where values are integers)."""
    index = {name: i for i, name in enumerate(space.dim_names)}
    terms, fixed_blocks = [], []
    for term in space.cost_terms(num_classes):
        if not term.dims:
            fixed_blocks.append(term.blocks[()])
            continue
        sizes = [space.dim(d).size for d in term.dims]
        table = torch.empty(sizes, dtype=torch.float32)
        for combo, placed in term.blocks.items():
            table[combo] = value(placed)
        terms.append((tuple(index[d] for d in term.dims), table))
    fixed = scale_fixed(fixed_blocks) if scale_fixed else float(sum(value(p) for p in fixed_blocks))
    return TermCostModel(kind, unit or COST_UNITS.get(kind, ""), terms, fixed)


def analytic_cost_model(space, kind: str, num_classes: int) -> TermCostModel:
    """MACs (millions) or params (millions) of every block, counted from shapes (no latency table)."""
    from fbnas.cost.counting import placed_cost

    if kind not in ("macs", "params"):
        raise FbnasError(f"loss.cost: analytic costs are 'macs' or 'params', got {kind!r}")
    col = 0 if kind == "macs" else 1

    def value(p: Placed) -> float:
        return placed_cost(p)[col] / 1e6

    def fixed(blocks: list[Placed]) -> float:
        return sum(placed_cost(p)[col] for p in blocks) / 1e6

    return term_cost_model(space, kind, num_classes, value, scale_fixed=fixed)
