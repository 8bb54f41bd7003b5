"""Resource-aware DNAS loss (FBNet eqs. 2, 9) over any per-candidate cost matrix.

The cost of a sampled architecture is ``fixed + sum_l sum_i m_li * cost(b_li)`` (eq. 9): linear in the
Gumbel weights, so it is differentiable w.r.t. theta. The per-candidate costs come from a latency table
(ms), or are counted analytically (MACs in millions, params in millions) without any table.

Loss forms (``form``):

* ``paper``:     ``CE * alpha * (log COST)^beta``           (FBNet eq. 2 as written in the paper)
* ``reference``: ``alpha * CE * log(COST^beta)``            (the widely copied code; = alpha*beta*CE*log COST)
* ``target``:    ``CE + lam * penalty(COST / target - 1)``  (hinge ``max(0, r)`` or ``abs`` penalty)
* ``none``:      ``CE`` (latency term off; the baseline of the latency-term experiment)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fbnas.errors import FbnasError
from fbnas.space.space import SearchSpace

COST_KINDS = ("latency", "macs", "params")
COST_UNITS = {"latency": "ms", "macs": "MMACs", "params": "M params"}
FORMS = ("paper", "reference", "target", "none")
PENALTIES = ("hinge", "abs")


@dataclass
class CostModel:
    """Per-candidate costs ``layers[l][i]`` plus the cost of the fixed blocks and head, in ``unit``."""

    kind: str
    layers: list[torch.Tensor]
    fixed: float
    unit: str

    @classmethod
    def from_matrix(cls, kind: str, matrix: torch.Tensor | list, fixed: float, num_choices: list[int],
                    unit: str | None = None) -> CostModel:
        """Build from an ``[L, K]`` matrix (rows may be padded past each layer's own ``K_l``)."""
        rows = [torch.as_tensor(matrix[li], dtype=torch.float32)[:k].clone() for li, k in enumerate(num_choices)]
        return cls(kind, rows, float(fixed), unit or COST_UNITS.get(kind, ""))

    def expected(self, weights: list[torch.Tensor]) -> torch.Tensor:
        """eq. 9: ``fixed + sum_l <m_l, cost_l>``; scalar for per-batch weights, ``[B]`` for per-sample."""
        total = None
        for w, c in zip(weights, self.layers, strict=True):
            term = w @ c.to(w.dtype)
            total = term if total is None else total + term
        assert total is not None
        return total + self.fixed

    def of_choices(self, choices: list[int]) -> float:
        return self.fixed + sum(float(c[int(i)]) for c, i in zip(self.layers, choices, strict=True))

    def min_max(self) -> tuple[float, float]:
        lo = self.fixed + sum(float(c.min()) for c in self.layers)
        hi = self.fixed + sum(float(c.max()) for c in self.layers)
        return lo, hi


def analytic_cost_model(space: SearchSpace, kind: str, num_classes: int) -> CostModel:
    """MACs (millions) or params (millions) of every candidate, counted from shapes (no LUT)."""
    from fbnas.cost.counting import block_cost, count

    if kind not in ("macs", "params"):
        raise FbnasError(f"loss.cost: analytic costs are 'macs' or 'params', got {kind!r}")
    report = count(space.to_spec([0] * space.num_layers), num_classes=num_classes)
    in_hw = {b_cost_pos: bc.in_hw for b_cost_pos, bc in enumerate(report.blocks)}
    rows = []
    for blocks in space.candidate_blocks():
        vals = []
        for b in blocks:
            h, w = in_hw[b.position]
            bc = block_cost(b, space.basic_args, h, w)
            vals.append((bc.macs if kind == "macs" else bc.params) / 1e6)
        rows.append(torch.tensor(vals, dtype=torch.float32))
    fixed_positions = set(space.fixed_positions())
    fixed = sum((bc.macs if kind == "macs" else bc.params) for p, bc in enumerate(report.blocks)
                if p in fixed_positions)
    fixed += report.head_macs if kind == "macs" else report.head_params
    return CostModel(kind, rows, fixed / 1e6, COST_UNITS[kind])


@dataclass
class LossConfig:
    form: str = "paper"
    alpha: float = 0.2
    beta: float = 0.6
    target: float | None = None
    lam: float = 1.0
    penalty: str = "hinge"
    cost_scale: float = 1.0  # cost (in its unit) is multiplied by this before the log / ratio

    def validate(self, where: str = "loss") -> None:
        if self.form not in FORMS:
            raise FbnasError(f"{where}.form: must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.penalty not in PENALTIES:
            raise FbnasError(f"{where}.penalty: must be one of {', '.join(PENALTIES)}, got {self.penalty!r}")
        if self.form == "target" and (self.target is None or self.target <= 0):
            raise FbnasError(f"{where}.target: form 'target' needs a target cost > 0, got {self.target!r}")
        for name in ("alpha", "beta", "cost_scale"):
            if getattr(self, name) <= 0:
                raise FbnasError(f"{where}.{name}: must be > 0, got {getattr(self, name)!r}")
        if self.lam < 0:
            raise FbnasError(f"{where}.lambda: must be >= 0, got {self.lam!r}")

    def check_cost_range(self, cost_min: float, where: str = "loss") -> None:
        """The log forms need COST > 1 for every architecture: (log COST)^beta is undefined below 1."""
        if self.form in ("paper", "reference") and cost_min * self.cost_scale <= 1.0:
            need = 10 ** math.ceil(math.log10(2.0 / max(cost_min, 1e-12)))
            raise FbnasError(f"{where}.cost_scale: the cheapest architecture costs {cost_min * self.cost_scale:.4g} "
                             f"(<= 1) after scaling, so log(cost) is not positive; set cost_scale to e.g. {need:g}")


def dnas_loss(logits: torch.Tensor, labels: torch.Tensor, cost: torch.Tensor | None,
              cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss and its parts. ``cost`` is a scalar (per-batch weights) or ``[B]`` (per-sample weights)."""
    if cfg.form == "none" or cost is None:
        ce = F.cross_entropy(logits, labels)
        return ce, {"ce": float(ce.detach()), "cost": float("nan") if cost is None else float(cost.detach().mean())}
    per_sample = cost.dim() > 0
    ce = F.cross_entropy(logits, labels, reduction="none" if per_sample else "mean")
    scaled = cost * cfg.cost_scale
    if cfg.form == "paper":
        loss = ce * cfg.alpha * torch.log(scaled).pow(cfg.beta)
    elif cfg.form == "reference":
        loss = cfg.alpha * ce * torch.log(scaled.pow(cfg.beta))
    else:
        assert cfg.target is not None
        ratio = scaled / (cfg.target * cfg.cost_scale) - 1.0
        pen = torch.clamp(ratio, min=0.0) if cfg.penalty == "hinge" else ratio.abs()
        loss = ce + cfg.lam * pen
    loss = loss.mean()
    return loss, {"ce": float(ce.detach().mean()), "cost": float(cost.detach().mean())}
