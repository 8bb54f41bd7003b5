"""Resource-aware DNAS loss (FBNet eqs. 2, 9) over any differentiable cost of the architecture weights.

The expected cost of a sampled architecture (eq. 9) is linear in each dimension's Gumbel weights, so it is
differentiable w.r.t. theta (:mod:`fbnas.cost.terms`: latency-table ms, or MACs / params in millions counted
analytically; FBNetV2's effective shapes, :mod:`fbnas.search.masking`).

Loss forms (``form``):

* ``paper``:     ``CE * alpha * (log COST)^beta``           (FBNet eq. 2 as written in the paper)
* ``reference``: ``alpha * CE * log(COST^beta)``            (the widely copied code; = alpha*beta*CE*log COST)
* ``target``:    ``CE + lam * penalty(COST / target - 1)``  (hinge ``max(0, r)`` or ``abs`` penalty)
* ``none``:      ``CE`` (latency term off; the baseline of the latency-term experiment)
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from fbnas.config import StrictModel
from fbnas.errors import FbnasError

LossForm = Literal["paper", "reference", "target", "none"]
CostKind = Literal["latency", "macs", "params"]
Penalty = Literal["hinge", "abs"]
PositiveFloat = Annotated[float, Field(gt=0.0)]


class LossConfig(StrictModel):
    """The loss section of a search config (see the module docstring for the forms)."""

    form: LossForm = "paper"
    alpha: PositiveFloat = 0.2
    beta: PositiveFloat = 0.6
    cost: CostKind = "latency"  # LUT ms, MMACs or M params
    target: PositiveFloat | None = None  # form target: the cost aimed at, in cost's unit
    lam: Annotated[float, Field(ge=0.0, alias="lambda")] = 1.0  # form target: weight of the penalty
    penalty: Penalty = "hinge"  # hinge: only exceeding the target costs; abs: aim at it
    cost_scale: PositiveFloat = 1.0  # cost is multiplied by this before the log / ratio
    weight_loss: Literal["ce", "full"] = "ce"  # what the weight step minimises: CE, or the whole loss

    @model_validator(mode="after")
    def _target_form_needs_a_target(self) -> LossConfig:
        if self.form == "target" and self.target is None:
            raise ValueError("target: form 'target' needs a target cost > 0, got None")
        return self

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
