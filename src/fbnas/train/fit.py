"""``fit()``: train a model on batches with a recipe and report metrics per epoch; no files, no prints.

Everything random is keyed by (seed, epoch, batch) (:mod:`fbnas.seeding`), and the whole training state
(model, optimizer, schedule, EMA, position inside an epoch) is :meth:`Fit.state_dict`, so a run resumed from
any checkpoint, even one written mid-epoch, ends with the weights of an uninterrupted run (same threads,
CPU). ``fbnas train`` wraps this with a run folder, checkpoints and progress (:mod:`fbnas.train.run`);
FBNetV3 calls it for its candidates, in-process or in a worker.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fbnas import distributed
from fbnas.data.loader import AugmentConfig, BatchLoader, mixup_batch
from fbnas.errors import DivergenceError
from fbnas.guards import NonFinite, check_loss, describe_names, is_bn_statistic, nonfinite_metrics, nonfinite_tensors
from fbnas.seeding import derive_seed, make_generator, rng_state, set_rng_state
from fbnas.train.recipe import Recipe, lr_factor


class ModelEma:
    """Exponential moving average of all float weights and buffers (decay warms up as (1+n)/(10+n))."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_sd, sd = self.module.state_dict(), model.state_dict()
        ema_f, cur_f = [], []
        for k, v in ema_sd.items():
            if v.is_floating_point():
                ema_f.append(v)
                cur_f.append(sd[k].detach())
            else:
                v.copy_(sd[k])
        torch._foreach_lerp_(ema_f, cur_f, 1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD (nesterov) / RMSProp / AdamW; no weight decay on biases and BN parameters."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0,
                               foreach=True)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=recipe.lr, alpha=0.9, eps=0.0316, momentum=recipe.momentum,
                                   foreach=True)
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(recipe.momentum, 0.999), foreach=True)


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule (stepped after every optimizer step): warmup then cosine or step decay."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(recipe, step, steps_per_epoch))


def augment_config(recipe: Recipe) -> AugmentConfig:
    return AugmentConfig(crop_padding=recipe.crop_padding, hflip=recipe.hflip)


def prepare_model(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Apply the recipe's dropout / drop path and memory format to a freshly built model."""
    if recipe.dropout is not None and hasattr(model, "set_dropout"):
        model.set_dropout(recipe.dropout)
    if recipe.drop_path > 0 and hasattr(model, "set_drop_path"):
        model.set_drop_path(recipe.drop_path)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@dataclass
class EpochTotals:
    """Running sums of one (possibly resumed) training epoch."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    steps: int = 0

    def to_dict(self) -> dict[str, float]:
        return dict(vars(self))


def train_epoch(model: nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer,
                scheduler: Any | None, recipe: Recipe, *, epoch: int = 0, ema: ModelEma | None = None,
                start_batch: int = 0, totals: EpochTotals | None = None, max_steps: int | None = None,
                callbacks: Sequence[Callback] = (), step_delay: float = 0.0) -> EpochTotals:
    """One epoch (or its rest from ``start_batch``) of training; returns the running totals.

    Stops early after ``max_steps`` batches or when a callback's ``should_stop()`` turns true (then
    ``totals.steps`` tells where to resume). ``scheduler.step()`` runs after every optimizer step.
    """
    totals = totals or EpochTotals()
    model.train()
    loader.set_epoch(epoch, start_batch)
    totals.steps = start_batch
    ddp = distributed.active()
    params = [p for p in model.parameters() if p.requires_grad] if ddp else []
    t0 = time.perf_counter()
    for images, labels in loader:
        if recipe.mixup_alpha > 0:
            g = make_generator(recipe.seed, epoch, totals.steps, "mixup")
            images, y_a, y_b, lam = mixup_batch(images, labels, recipe.mixup_alpha, g)
            out = model(images)
            loss = lam * F.cross_entropy(out, y_a, label_smoothing=recipe.label_smoothing) + \
                (1.0 - lam) * F.cross_entropy(out, y_b, label_smoothing=recipe.label_smoothing)
        else:
            out = model(images)
            loss = F.cross_entropy(out, labels, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        n = labels.shape[0]
        step = {"loss": float(loss.detach()), "correct": int((out.detach().argmax(1) == labels).sum())}
        stop_asked = False
        if ddp:  # the global batch's gradients, loss and counts; a stop asked on any rank stops every rank
            stop_asked = any(cb.should_stop() for cb in callbacks)
            step["stop"] = float(stop_asked)
            step, n = distributed.sync_step(params, step, n)
            stop_asked = step.pop("stop") > 0
        optimizer.step()
        distributed.check_identical(params, "weights")
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        loss_v = check_loss(step["loss"], "the training loss", totals.steps, len(loader))
        totals.loss_sum += loss_v * n
        totals.correct += int(step["correct"])
        totals.seen += n
        totals.steps += 1
        if step_delay:
            time.sleep(step_delay)
        elapsed = totals.seconds + time.perf_counter() - t0
        for cb in callbacks:
            cb.on_step(epoch, totals, len(loader), elapsed)
        if (max_steps is not None and totals.steps - start_batch >= max_steps) or (
                stop_asked if ddp else any(cb.should_stop() for cb in callbacks)):
            break
    totals.seconds += time.perf_counter() - t0
    return totals


@torch.inference_mode()
def evaluate(model: nn.Module, loader: BatchLoader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) over the whole loader, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    loader.set_epoch(0)
    for images, labels in loader:
        out = model(images)
        loss_sum += float(F.cross_entropy(out, labels, reduction="sum"))
        correct += int((out.argmax(1) == labels).sum())
        seen += labels.shape[0]
    model.train(was_training)
    return loss_sum / max(1, seen), correct / max(1, seen)


class Callback:
    """Hooks of :func:`fit`; every method is optional (the base does nothing)."""

    def on_step(self, epoch: int, totals: EpochTotals, steps_per_epoch: int, elapsed_s: float) -> None:
        """After every optimizer step (progress display)."""

    def on_epoch_end(self, record: dict[str, Any], state: Fit) -> None:
        """After an epoch's evaluation; ``state.position`` is at the next epoch's start (checkpoints, logs)."""

    def on_interrupt(self, state: Fit) -> None:
        """:func:`fit` stops mid-epoch (``should_stop``); ``state.position`` says where to resume."""

    def should_stop(self) -> bool:
        return False


@dataclass
class Position:
    """Where a run is: completed epochs, batches done in the next (partial) epoch, its totals, time spent."""

    epoch: int = 0
    step: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)
    elapsed_s: float = 0.0


class Fit:
    """The whole training state of one run: model, optimizer, lr schedule, EMA and position."""

    def __init__(self, model: nn.Module, recipe: Recipe, steps_per_epoch: int) -> None:
        self.model, self.recipe = model, recipe
        self.optimizer = build_optimizer(model, recipe)
        self.scheduler = build_scheduler(self.optimizer, recipe, steps_per_epoch)
        self.ema = ModelEma(model, recipe.ema_decay) if recipe.ema_decay > 0 else None
        self.position = Position()

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        p = self.position
        return {"model": self.model.state_dict(),
                "ema": self.ema.module.state_dict() if self.ema is not None else None,
                "ema_state": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(), "epoch": p.epoch, "step": p.step,
                "partial": p.totals.to_dict() if p.step else {}, "elapsed_s": p.elapsed_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema_state") is not None:
            self.ema.load_state_dict(state["ema_state"])
        set_rng_state(state["rng"])
        step = int(state.get("step", 0))
        self.position = Position(int(state["epoch"]), step,
                                 EpochTotals(**state.get("partial", {})) if step else EpochTotals(),
                                 float(state.get("elapsed_s", 0.0)))


def likely_cause(recipe: Recipe) -> str:
    return (f"likely cause: lr {recipe.lr:g} is too high for this network and batch size {recipe.batch_size} "
            f"({recipe.optimizer}; a longer warmup_epochs helps too)")


def check_finite(state: Fit, record: dict[str, Any] | None, epoch: int) -> None:
    """Raise :class:`DivergenceError` when a metric of ``record`` or a tensor of the training state (weights, BN
    running statistics, EMA, optimizer moments) is not finite: checked before any callback saves a checkpoint."""
    bad = nonfinite_metrics(record or {})
    where = f"training diverged in epoch {epoch + 1}"
    if bad:
        raise DivergenceError(f"{where}: {describe_names(bad)} {'is' if len(bad) == 1 else 'are'} not finite "
                              f"({record[bad[0]]}); {likely_cause(state.recipe)}")
    names = nonfinite_tensors(state.model.state_dict(), "model")
    if state.ema is not None:
        names += nonfinite_tensors(state.ema.module.state_dict(), "ema")
    names += nonfinite_tensors(state.optimizer.state_dict()["state"], "optimizer")
    if names:
        kind = "BN running statistics" if all(is_bn_statistic(n) for n in names) else "weights"
        raise DivergenceError(f"{where}: the {kind} are not finite ({describe_names(names)}); "
                              f"{likely_cause(state.recipe)}")


@dataclass
class FitResult:
    history: list[dict[str, Any]]  # one record per epoch trained in this call
    stopped: bool  # a callback stopped the run before recipe.epochs
    state: Fit


def fit(model: nn.Module, train_loader: BatchLoader, recipe: Recipe, *,
        eval_loaders: dict[str, BatchLoader] | None = None, callbacks: Sequence[Callback] = (),
        state: Fit | None = None, step_delay: float = 0.0) -> FitResult:
    """Train ``model`` to ``recipe.epochs`` (from ``state``'s position when given), evaluating the EMA (or
    the model) on every ``eval_loaders[name]`` after each epoch (``{name}_loss``, ``{name}_acc``)."""
    state = state or Fit(model, recipe, len(train_loader))
    eval_loaders = eval_loaders or {}
    history: list[dict[str, Any]] = []
    pos = state.position
    start_batch, totals = pos.step, pos.totals
    elapsed0, t_start = pos.elapsed_s, time.perf_counter()
    for epoch in range(pos.epoch, recipe.epochs):
        if start_batch == 0:
            torch.manual_seed(derive_seed(recipe.seed, epoch, "model"))
        try:
            totals = train_epoch(model, train_loader, state.optimizer, state.scheduler, recipe, epoch=epoch,
                                 ema=state.ema, start_batch=start_batch, totals=totals, callbacks=callbacks,
                                 step_delay=step_delay)
        except NonFinite as e:
            raise DivergenceError(f"training diverged in epoch {epoch + 1} ({e.where}): {e}; "
                                  f"{likely_cause(recipe)}") from None
        elapsed = elapsed0 + time.perf_counter() - t_start
        # per-rank BN running statistics (and the EMA's) averaged: every rank then holds the state rank 0 saves
        distributed.average_buffers(model, state.ema.module if state.ema is not None else None)
        if totals.steps < len(train_loader):  # stopped mid-epoch
            check_finite(state, None, epoch)
            state.position = Position(epoch, totals.steps, totals, elapsed)
            for cb in callbacks:
                cb.on_interrupt(state)
            return FitResult(history, True, state)
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": totals.loss_sum / max(1, totals.seen),
                                  "train_acc": totals.correct / max(1, totals.seen)}
        for name, loader in eval_loaders.items():
            record[f"{name}_loss"], record[f"{name}_acc"] = evaluate(state.eval_model, loader)
        record["lr"] = state.optimizer.param_groups[0]["lr"]
        record["images_per_s"] = totals.seen / max(totals.seconds, 1e-9)
        record["elapsed_s"] = elapsed0 + time.perf_counter() - t_start
        check_finite(state, record, epoch)
        state.position = Position(epoch + 1, 0, EpochTotals(), record["elapsed_s"])
        history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(record, state)
        start_batch, totals = 0, EpochTotals()
        if distributed.any_rank(any(cb.should_stop() for cb in callbacks)) and epoch + 1 < recipe.epochs:
            return FitResult(history, True, state)
    return FitResult(history, False, state)
