"""Architecture updates of the alternating search loop.

:class:`GumbelUpdate` is FBNetV1/V2's: the architecture weights of a step are a Gumbel-softmax sample of
the logits theta (seed 000, eq. 8) with the temperature ``tau0 * exp(-tau_decay * e)`` over the
architecture epochs ``e``, theta is trained with Adam on the whole loss (CE and the cost term, eq. 2) on the
architecture split, and the noise of step ``t`` comes from ``step_generator(seed, t, stream)``, never from
the global RNG, so DDP ranks and resumed runs draw the same architectures.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from fbnas import distributed
from fbnas.guards import check_loss
from fbnas.search.gumbel import temperature
from fbnas.search.loss import LossConfig, dnas_loss
from fbnas.search.protocols import ArchSample, CostModel, Supernet
from fbnas.seeding import STREAMS, step_generator


def local_sample(sample: ArchSample, rows: int) -> ArchSample:
    """This rank's rows of a sample drawn for a global batch of ``rows`` images (per-image noise); the sample
    itself for per-batch noise or in a single process."""
    if not distributed.active():
        return sample
    return ArchSample([distributed.local_rows(w, rows) for w in sample.weights], sample.tau, sample.hard)


class FrozenWeights:
    """Turn off weight gradients during the architecture step (only activations' gradients are needed)."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for p in self.params:
            p.requires_grad_(True)


def progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, disable=not sys.stderr.isatty())


def cost_gradient(logits: torch.Tensor, labels: torch.Tensor, cost: torch.Tensor, loss_cfg: LossConfig,
                  params: list[torch.nn.Parameter]) -> list[torch.Tensor] | None:
    """The part of the theta gradient that comes through the cost term: the loss with the logits held
    constant, differentiated through the cost alone (a tiny graph; ``.grad`` is not touched)."""
    if loss_cfg.form == "none" or not cost.requires_grad:
        return None
    cost_only, _ = dnas_loss(logits.detach(), labels, cost, loss_cfg)
    grads = torch.autograd.grad(cost_only, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def _accumulate(total: list[torch.Tensor] | None, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    return grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]


def cost_pull(cost_sum: list[torch.Tensor] | None, total_sum: list[torch.Tensor] | None) -> float:
    """|sum of the cost term's theta gradients| / |sum of the rest| over an epoch: how hard the cost term
    pulls theta relative to cross-entropy (0: not at all; well below 1: CE decides the architecture)."""
    if cost_sum is None or total_sum is None:
        return 0.0
    c = torch.cat([g.flatten() for g in cost_sum])
    rest = torch.cat([t.flatten() for t in total_sum]) - c
    return float(c.norm() / rest.norm().clamp_min(1e-30))


class GumbelUpdate:
    """Gumbel-softmax architecture samples and an Adam step on theta per architecture batch."""

    per_step = False

    def __init__(self, net: Supernet, cost_model: CostModel, loss: LossConfig, *, seed: int, tau0: float,
                 tau_decay: float, warmup_epochs: int, lr: float, weight_decay: float) -> None:
        self.cost_model, self.loss, self.seed = cost_model, loss, seed
        self.tau0, self.tau_decay, self.warmup_epochs = tau0, tau_decay, warmup_epochs
        self.optimizer = torch.optim.Adam(net.arch_parameters(), lr=lr, weight_decay=weight_decay)
        self.tau = tau0

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        self.tau = temperature(max(0, epoch - self.warmup_epochs), self.tau0, self.tau_decay)
        return {"tau": self.tau}

    def weight_sample(self, net: Supernet, step: int, batch_size: int) -> ArchSample:
        """The step's sample for a batch of ``batch_size``; data-parallel, this rank's rows of the global batch's
        draw (per-image noise), so every rank draws the same sample and the shards see the single process's."""
        n = distributed.global_rows(batch_size)
        return local_sample(net.arch_weights(self.tau, step_generator(self.seed, step, STREAMS["weights"]),
                                             batch_size=n), n)

    def weight_step(self, net: Supernet, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, float]:
        """The weights' loss on one Gumbel sample drawn without gradients (theta is not trained here): CE, or the
        whole loss with ``loss.weight_loss: full``."""
        with torch.no_grad():
            sample = self.weight_sample(net, step, x.shape[0])
        logits = net(x, sample)
        out: dict[str, float] = {}
        if self.loss.weight_loss == "full" and self.loss.form != "none":
            loss, parts = dnas_loss(logits, y, self.cost_model.expected(sample.weights), self.loss)
            ce = parts["ce"]
            out["loss"] = float(loss.detach())  # checked by the loop, not logged
        else:
            loss = torch.nn.functional.cross_entropy(logits, y)
            ce = float(loss.detach())
        loss.backward()
        return {**out, "ce": ce, "correct": int((logits.detach().argmax(1) == y).sum())}

    def arch_step(self, net: Supernet, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, float]:
        raise NotImplementedError("the Gumbel update trains theta an epoch at a time (train_epoch)")

    def train_epoch(self, net: Supernet, loader: Any, epoch: int) -> dict[str, float]:
        """One epoch of theta steps on the whole loss; weights frozen. Also reports ``t_cost_pull``
        (:func:`cost_pull`): whether the cost term can move the search at all with this alpha / beta / unit."""
        net.train()
        loader.set_epoch(epoch)
        n_batches = len(loader)
        sums = {"t_loss": 0.0, "t_ce": 0.0, "t_cost": 0.0}
        correct, seen = 0, 0
        params = net.arch_parameters()
        cost_sum: list[torch.Tensor] | None = None
        total_sum: list[torch.Tensor] | None = None
        bar = progress_bar(n_batches, f"epoch {epoch} theta")
        with FrozenWeights(net.weight_parameters()):
            for i, (x, y) in enumerate(loader):
                step = epoch * n_batches + i
                rows = distributed.global_rows(x.shape[0])
                sample = local_sample(net.arch_weights(self.tau, step_generator(self.seed, step, STREAMS["theta"]),
                                                       batch_size=rows), rows)
                logits = net(x, sample)
                cost = self.cost_model.expected(sample.weights)
                loss, parts = dnas_loss(logits, y, cost, self.loss)
                g_cost = cost_gradient(logits, y, cost, self.loss, params)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                step_vals = {"loss": float(loss.detach()), "ce": parts["ce"], "cost": parts["cost"],
                             "correct": int((logits.detach().argmax(1) == y).sum())}
                step_vals, n = distributed.sync_step(params, step_vals, len(y))  # data-parallel: global theta grads
                check_loss(step_vals["loss"], "the architecture loss", i, n_batches, "theta")
                if g_cost is not None:
                    cost_sum = _accumulate(cost_sum, g_cost)
                    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
                    total_sum = _accumulate(total_sum, grads)
                self.optimizer.step()
                distributed.check_identical(params, "architecture parameters")
                sums["t_loss"] += step_vals["loss"] * n
                sums["t_ce"] += step_vals["ce"] * n
                sums["t_cost"] += step_vals["cost"] * n
                correct += step_vals["correct"]
                seen += n
                bar.update(1)
        bar.close()
        out = {k: v / max(1, seen) for k, v in sums.items()}
        out["t_acc"] = correct / max(1, seen)
        out["t_cost_pull"] = cost_pull(cost_sum, total_sum)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
