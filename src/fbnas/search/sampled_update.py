"""FP-NAS's architecture update (seed 002, sections 3.1, 3.2 and 3.4): every step samples K architectures from
P(A | alpha) and trains on them, K adaptive to the distribution's entropy, the weights and alpha both learning
from importance weights. Equations are numbered in the seed's order of display: (1) the mixed op, (2)
``P(A | alpha) = prod_l P(A^l | alpha^l)``, (3) ``P(y | X, w, alpha) ~ 1/K sum_k P(y | X, w, A_k)``, (4)
``K = lambda H``, (5) the factorized distribution, (6) ``L = -log P(y | X, w, alpha) + beta log C(alpha)`` with
``C(alpha) ~ 1/K sum_k C(A_k)`` and ``C(A_k) = max(0, FLOPs(A_k) / TAR - 1)``, (7) the gradient of (6) with the
importance weights (an image in the seed; derived here from (3) and (6)).

Per step ``t`` (draws keyed by ``(seed, t, stream)``, :func:`fbnas.seeding.step_generator`, so resumed runs and DDP
ranks draw the same architectures):

* ``K = clamp(ceil(lambda H), K_min, K_max)`` (eq. 4; :func:`fbnas.search.distribution.sample_count`), or a fixed K
  (PARSEC's sampling, the baseline);
* **weight step** (a batch of the weight split): the batch log-likelihood ``l_k = log P(y | X, w, A_k)`` of every
  sampled child, its importance weight ``w_k = exp(l_k) / sum_j exp(l_j)`` (the posterior over the K samples) and
  the gradient of eq. 3's ``log P(y | X, w, alpha)``: ``sum_k w_k grad_w log P(y | X, w, A_k)``. The children run
  one after another (forward and backward, one child's memory); the gradients are combined with a running
  log-sum-exp, so no child's weight is needed before its backward. ``weight_loss: mean`` weights children
  equally instead.
* **architecture step** (a batch of the architecture split): forwards only, then the score-function gradient of
  eq. 6, ``grad_alpha L = -sum_k (w_k - beta c_k) grad_alpha log P(A_k | alpha)`` with
  ``c_k = C(A_k) / sum_j C(A_j)`` (eq. 7: ``grad log C(alpha) = E[C(A) grad log P(A)] / E[C(A)]``), applied by
  Adam. When every sample is within the target (the band with ``target_floor``), ``C(alpha) = 0``: ``log C`` is
  not finite and has no gradient, and the cost term vanishes (``c_k = 0``), leaving the likelihood alone to move
  alpha.
* **FD -> JD** (section 3.3) at the first step of epoch ``switch_epoch``: the joint logits start at the product of
  the factorized marginals (:meth:`ArchDistribution.switch_to_joint`) and Adam starts anew on them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from fbnas import distributed
from fbnas.search.distribution import sample_count
from fbnas.search.protocols import CostModel
from fbnas.search.single_path import SinglePathSupernet
from fbnas.seeding import STREAMS, step_generator

PHASES = {"weights": 0, "arch": 1}


def importance_weights(log_likelihoods: torch.Tensor) -> torch.Tensor:
    """``w_k = P(y | X, w, A_k) / sum_j P(y | X, w, A_j)`` from the batch log-likelihoods (float64)."""
    return torch.softmax(log_likelihoods.double(), dim=0)


def cost_penalties(costs: torch.Tensor, target: float | None, floor: float = 0.0) -> torch.Tensor:
    """``C(A_k) = max(0, cost(A_k) / TAR - 1) + max(0, floor - cost(A_k) / TAR)``; zeros without a target.

    ``floor = 0`` is the seed's eq. 6 (over the target only); ``0 < floor < 1`` also penalises an architecture
    that uses less than ``floor`` of the target, so both sides of the band ``[floor * TAR, TAR]`` pull the
    distribution towards it (the seed's term only ever pushes down)."""
    costs = costs.double()
    if target is None:
        return torch.zeros_like(costs)
    ratio = costs / target
    return torch.clamp(ratio - 1.0, min=0.0) + torch.clamp(floor - ratio, min=0.0)


def cost_shares(penalties: torch.Tensor, baseline: bool = False) -> torch.Tensor:
    """``c_k = C(A_k) / sum_j C(A_j)``, the cost term's weights in eq. 7; zeros when every ``C(A_k)`` is 0.

    ``baseline``: ``c_k - 1/K`` instead (when some ``C(A_k) > 0``). ``1/K sum_k grad log P(A_k | alpha)`` has
    expectation 0, so subtracting it leaves the estimate's expectation as it is; the cost term then carries no net
    mass: it moves probability from the samples over their share of the cost to the others (those in the target
    first) instead of pushing the drawn architectures down as a whole, which under a joint distribution spreads
    their mass over every other tuple of the layer, most of them costlier."""
    total = float(penalties.sum())
    if total <= 0:
        return torch.zeros_like(penalties)
    shares = penalties / total
    return shares - 1.0 / penalties.numel() if baseline else shares


def alpha_surrogate(log_probs: torch.Tensor, weights: torch.Tensor, shares: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """``-sum_k (w_k - beta c_k) log P(A_k | alpha)`` with the coefficients held constant: its gradient is eq. 7."""
    coef = (weights - beta * shares).detach().to(log_probs.dtype)
    return -(coef * log_probs).sum()


def loss_value(log_likelihoods: torch.Tensor, penalties: torch.Tensor, beta: float, n_images: int
               ) -> dict[str, float | None]:
    """Eq. 6 on the K samples, per image: ``-log(1/K sum_k P(y | X, w, A_k)) / N``; ``C(alpha)`` and ``beta log C``
    (None when C = 0)."""
    k = log_likelihoods.numel()
    nll = -float(torch.logsumexp(log_likelihoods.double(), 0) - math.log(k)) / n_images
    c = float(penalties.double().mean())
    return {"nll": nll, "c": c, "cost_term": beta * math.log(c) if c > 0 else None}


class SampledUpdate:
    """FP-NAS's sampled update of a :class:`SinglePathSupernet` (one architecture step after every weight step)."""

    per_step = True

    def __init__(self, net: SinglePathSupernet, cost_model: CostModel, *, seed: int, lam: float, k_min: int,
                 k_max: int, fixed_k: int | None, switch_epoch: int | None, beta: float, target: float | None,
                 weight_loss: str, lr: float, weight_decay: float, target_floor: float = 0.0,
                 cost_baseline: bool = False) -> None:
        self.net, self.cost_model, self.seed = net, cost_model, seed
        self.lam, self.k_min, self.k_max, self.fixed_k = lam, k_min, k_max, fixed_k
        self.switch_epoch, self.beta, self.target, self.weight_loss = switch_epoch, beta, target, weight_loss
        self.target_floor, self.cost_baseline = target_floor, cost_baseline
        self.lr, self.weight_decay = lr, weight_decay
        self.optimizer = self._optimizer()
        self.drawn = {"weights": 0, "arch": 0}
        self.trace: list[list[float]] = []  # [phase, step, K, H, mean CE of the samples, JD?] per step

    def _optimizer(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.net.arch_parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # ---- sampling ---------------------------------------------------------------------------------
    def count(self) -> tuple[int, float]:
        """(K, H) for the current distribution."""
        h = self.net.dist.entropy()
        return (self.fixed_k if self.fixed_k is not None else sample_count(h, self.lam, self.k_min, self.k_max)), h

    def draw(self, step: int, phase: str) -> tuple[int, float, list[list[int]]]:
        k, h = self.count()
        stream = STREAMS["weights"] if phase == "weights" else STREAMS["theta"]
        choices = self.net.dist.sample(k, step_generator(self.seed, step, stream))
        self.drawn[phase] += k
        return k, h, choices

    # ---- the ArchitectureUpdate protocol --------------------------------------------------------------
    def epoch_info(self, epoch: int) -> dict[str, Any]:
        dist = self.net.dist
        if self.switch_epoch is not None and epoch >= self.switch_epoch and not dist.is_joint:
            dist.switch_to_joint()
            self.optimizer = self._optimizer()
        k, h = self.count()
        return {"dist": "jd" if dist.is_joint else "fd", "k": k, "entropy": round(h, 6)}

    def weight_step(self, net: SinglePathSupernet, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, float]:
        """The gradient of eq. 3 on the weights, accumulated child by child (``.grad`` holds it afterwards)."""
        k, h, choices = self.draw(step, "weights")
        params = net.weight_parameters()
        n = len(y)
        n_global = distributed.global_rows(n)
        top, total = -math.inf, 0.0
        ces, correct, lls = [], 0, []
        for ch in choices:
            logits = net.run(x, ch)
            ce = F.cross_entropy(logits, y)
            # the child's log-likelihood on the global batch (data-parallel: summed over the ranks), so every rank
            # weights its children alike and the all-reduced gradient is the single process's
            ll = -float(distributed.all_sum(ce.detach().double() * n))
            if self.weight_loss == "importance":  # acc <- acc * exp(top - top') + exp(l_k - top') g_k
                new_top = max(top, ll)
                keep, w = math.exp(top - new_top), math.exp(ll - new_top)
                top = new_top
            else:
                keep, w = 1.0, 1.0
            if keep != 1.0:
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(keep)
            if w > 0.0:  # a child far less likely than the best so far adds nothing
                (ce * w).backward()
            total = total * keep + w
            ces.append(-ll / n_global)
            lls.append(ll)
            correct += int((logits.detach().argmax(1) == y).sum())
        for p in params:
            if p.grad is not None:
                p.grad.div_(total)
        self.trace.append([PHASES["weights"], step, k, h, sum(ces) / k, int(net.dist.is_joint)])
        w = importance_weights(torch.tensor(lls))
        return {"ce": sum(ces) / k, "correct": correct / k, "k": k, "h": h, "ess": float(1.0 / (w * w).sum())}

    def arch_step(self, net: SinglePathSupernet, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, float]:
        """Eq. 7 from K forwards: importance weights, cost shares, the surrogate's gradient, one Adam step."""
        k, h, choices = self.draw(step, "arch")
        with torch.no_grad():
            lls = torch.stack([-F.cross_entropy(net.run(x, ch), y, reduction="sum") for ch in choices])
        lls = distributed.all_sum(lls)  # data-parallel: the global batch's, so every rank takes the same step
        n_images = distributed.global_rows(len(y))
        w = importance_weights(lls)
        costs = torch.tensor([self.cost_model.of_choices(ch) for ch in choices], dtype=torch.float64)
        penalties = cost_penalties(costs, self.target, self.target_floor)
        shares = cost_shares(penalties, self.cost_baseline)
        loss = alpha_surrogate(net.dist.log_prob(torch.tensor(choices)), w, shares, self.beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        distributed.check_identical(self.optimizer.param_groups[0]["params"], "architecture parameters")
        value = loss_value(lls, penalties, self.beta, n_images)
        ce = float(-lls.double().mean()) / n_images
        self.trace.append([PHASES["arch"], step, k, h, ce, int(net.dist.is_joint)])
        out = {"t_nll": value["nll"], "t_ce": ce, "t_cost": float(costs.mean()), "t_c": value["c"], "t_k": k, "t_h": h,
               "t_ess": float(1.0 / (w * w).sum()), "t_over": float((penalties > 0).double().mean())}
        return out  # type: ignore[return-value]

    def train_epoch(self, net: SinglePathSupernet, loader: Any, epoch: int) -> dict[str, float]:
        raise NotImplementedError("the sampled update takes one architecture step after every weight step")

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "drawn": dict(self.drawn),
                "trace": [list(r) for r in self.trace]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer = self._optimizer()  # over the active parameters (JD after the switch)
        self.optimizer.load_state_dict(state["optimizer"])
        self.drawn = dict(state["drawn"])
        self.trace = [list(r) for r in state["trace"]]
