"""The training loop: reusable pieces (optimizer, schedule, EMA, train_epoch, evaluate) and :func:`train`.

Randomness is derived from (seed, epoch, batch) so that a run resumed from any checkpoint, even a mid-epoch
one written on Ctrl-C, ends with the same weights as an uninterrupted run (same thread count, CPU).
"""

from __future__ import annotations

import copy
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fbnas.data.loader import AugmentConfig, BatchLoader, derive_seed, make_generator, mixup_batch
from fbnas.train.recipe import Recipe, lr_factor

EVAL_BATCH_SIZE = 1000


class TrainingInterrupted(Exception):
    """Raised by :func:`train` after Ctrl-C once the checkpoint is saved; ``str()`` says how to resume."""

    def __init__(self, out_dir: Path, epoch: int, step: int) -> None:
        super().__init__(f"interrupted in epoch {epoch + 1} after {step} steps; checkpoint saved; "
                         f"resume with: fbnas train --resume {out_dir}")
        self.out_dir, self.epoch, self.step = out_dir, epoch, step


# ---- building blocks -------------------------------------------------------------------------------
class ModelEma:
    """Exponential moving average of all float weights and buffers (decay warms up as (1+n)/(10+n))."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._pairs: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None

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
                should_stop: Callable[[], bool] | None = None, progress: Any | None = None,
                step_delay: float = 0.0) -> EpochTotals:
    """One epoch (or its rest from ``start_batch``) of training; returns the running totals.

    Stops early after ``max_steps`` batches or when ``should_stop()`` turns true (then ``totals.steps`` tells
    where to resume). ``scheduler.step()`` runs after every optimizer step.
    """
    totals = totals or EpochTotals()
    model.train()
    loader.set_epoch(epoch, start_batch)
    totals.steps = start_batch
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
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        n = labels.shape[0]
        loss_v = float(loss.detach())
        if not math.isfinite(loss_v):
            from fbnas.errors import FbnasError

            raise FbnasError(f"training diverged (loss {loss_v}) in epoch {epoch + 1}; lower the lr")
        totals.loss_sum += loss_v * n
        totals.correct += int((out.detach().argmax(1) == labels).sum())
        totals.seen += n
        totals.steps += 1
        if step_delay:
            time.sleep(step_delay)
        if progress is not None:
            progress.update(1)
            if totals.steps % 10 == 0 or totals.steps == len(loader):
                elapsed = totals.seconds + time.perf_counter() - t0
                progress.set_postfix(loss=f"{totals.loss_sum / totals.seen:.3f}",
                                     acc=f"{100 * totals.correct / totals.seen:.1f}",
                                     img_s=f"{totals.seen / max(elapsed, 1e-9):.0f}", refresh=False)
        if (max_steps is not None and totals.steps - start_batch >= max_steps) or (should_stop and should_stop()):
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


# ---- the whole run ---------------------------------------------------------------------------------
class _StopFlag:
    """First SIGINT asks the loop to stop at the next batch boundary; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nfbnas: Ctrl-C: saving a checkpoint at the end of this step (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(spec: Any, recipe: Recipe | None, data_name: str, out_dir: str | Path, data_dir: str | Path | None = None,
          resume: bool = False, val_ratio: float = 0.0, progress: bool = True, *, limit_train: int | None = None,
          limit_test: int | None = None, image_size: int | None = None, step_delay: float = 0.0
          ) -> dict[str, Any]:
    """Train ``spec`` (zoo name, spec file, dict or ArchSpec) on ``data_name`` with ``recipe``; return final metrics.

    Writes ``out_dir/config.json``, ``metrics.jsonl`` (one line per epoch) and ``checkpoint.pt`` (atomically,
    every epoch). With ``resume`` the arch, recipe and data options come from the checkpoint (a given ``recipe``
    only changes ``epochs``) and training continues bit-exactly. ``val_ratio`` > 0 holds out part of the
    training set (deterministic by seed) and reports val_loss/val_acc. ``limit_train``/``limit_test`` keep the
    first N samples (quick runs, tests). Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`.
    Inputs are validated and data loaded before anything is written, so a bad input leaves no output behind.
    """
    from fbnas.arch.spec import ArchSpec
    from fbnas.arch.zoo import resolve_arch
    from fbnas.data.datasets import load_dataset
    from fbnas.data.loader import split_indices
    from fbnas.errors import FbnasError
    from fbnas.io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
    from fbnas.nn.model import build_model
    from fbnas.runtime import set_threads, tune_allocator
    from fbnas.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state

    tune_allocator()
    out = Path(out_dir)
    ckpt_file = out / CHECKPOINT_NAME
    state: dict[str, Any] | None = None
    if resume:
        if not ckpt_file.exists():
            raise FbnasError(f"{ckpt_file}: no checkpoint to resume from")
        state = load_checkpoint(ckpt_file)
        arch = ArchSpec.from_dict(state["arch"], source=str(ckpt_file))
        saved = Recipe.from_dict(state["recipe"], source=f"{ckpt_file} recipe")
        recipe = saved.replace(epochs=recipe.epochs) if recipe is not None else saved
        data_opts = dict(state["data"])
        data_name = data_opts["name"]
        val_ratio = float(data_opts.get("val_ratio", 0.0))
        limit_train, limit_test = data_opts.get("limit_train"), data_opts.get("limit_test")
        image_size = data_opts.get("image_size")
        if data_dir is None:
            data_dir = data_opts.get("data_dir")
    else:
        if recipe is None:
            recipe = Recipe()
        recipe.validate()
        arch = resolve_arch(spec)
    if not 0.0 <= val_ratio < 1.0:
        raise FbnasError(f"--val-ratio must be in [0, 1), got {val_ratio}")

    set_threads(recipe.threads)
    train_set = load_dataset(data_name, data_dir, train=True, image_size=image_size).subset(limit_train)
    test_set = load_dataset(data_name, data_dir, train=False, image_size=image_size).subset(limit_test)
    test_set.mean, test_set.std = train_set.mean, train_set.std
    if image_size is None and arch.input_size < train_set.image_size:
        # an architecture searched at a lower resolution (DMaskingNAS) trains at that resolution
        train_set, test_set = train_set.resized(arch.input_size), test_set.resized(arch.input_size)
    if (arch.in_channels, arch.input_size) != (train_set.channels, train_set.image_size):
        arch = arch.copy(in_channels=train_set.channels, input_size=train_set.image_size)
        arch.validate(f"{arch.name} at {train_set.image_size}px")
    num_classes = train_set.num_classes

    train_idx, val_idx = split_indices(len(train_set), val_ratio, recipe.seed)
    if len(train_idx) == 0:
        raise FbnasError("no training samples left (check --limit-train and --val-ratio)")
    loader = BatchLoader(train_set, train_idx, recipe.batch_size, shuffle=True, augment=augment_config(recipe),
                         seed=recipe.seed, channels_last=recipe.channels_last)
    test_loader = BatchLoader(test_set, None, EVAL_BATCH_SIZE, shuffle=False, channels_last=recipe.channels_last)
    val_loader = (BatchLoader(train_set, val_idx, EVAL_BATCH_SIZE, shuffle=False, channels_last=recipe.channels_last)
                  if len(val_idx) else None)

    torch.manual_seed(derive_seed(recipe.seed, "init"))
    model = prepare_model(build_model(arch, num_classes), recipe)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, len(loader))
    ema = ModelEma(model, recipe.ema_decay) if recipe.ema_decay > 0 else None

    data_info = {"name": data_name, "data_dir": str(data_dir) if data_dir is not None else None,
                 "val_ratio": val_ratio, "limit_train": limit_train, "limit_test": limit_test,
                 "image_size": image_size, "num_classes": num_classes, "train_samples": len(train_idx),
                 "val_samples": len(val_idx), "test_samples": len(test_set)}
    start_epoch, start_batch, totals, elapsed0 = 0, 0, EpochTotals(), 0.0
    metrics_file = out / "metrics.jsonl"
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema_state") is not None:
            ema.load_state_dict(state["ema_state"])
        set_rng_state(state["rng"])
        start_epoch, start_batch = int(state["epoch"]), int(state.get("step", 0))
        totals = EpochTotals(**state.get("partial", {})) if start_batch else EpochTotals()
        elapsed0 = float(state.get("elapsed_s", 0.0))
        if state.get("threads") != torch.get_num_threads():
            print(f"fbnas: note: resuming with {torch.get_num_threads()} threads, the run used "
                  f"{state.get('threads')}; weights may differ from an uninterrupted run", file=sys.stderr)
        kept = [r for r in read_jsonl(metrics_file) if r.get("epoch", 0) <= start_epoch]
        atomic_write_text(metrics_file, "".join(json.dumps(r) + "\n" for r in kept))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for stale in (metrics_file, ckpt_file):
            stale.unlink(missing_ok=True)
    atomic_write_json(out / "config.json", {"arch": arch.to_dict(), "recipe": recipe.to_dict(), "data": data_info,
                                            "threads": torch.get_num_threads()})

    def checkpoint(epoch_done: int, step: int, part: EpochTotals, elapsed: float) -> None:
        save_checkpoint(ckpt_file, {
            "arch": arch.to_dict(), "num_classes": num_classes, "model": model.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "ema_state": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
            "epoch": epoch_done, "step": step, "partial": part.to_dict() if step else {},
            "elapsed_s": elapsed, "recipe": recipe.to_dict(), "data": data_info,
            "threads": torch.get_num_threads(),
        })

    eval_model = ema.module if ema is not None else model
    run_t0 = time.perf_counter()
    last: dict[str, Any] = {}
    with _StopFlag() as stop:
        for epoch in range(start_epoch, recipe.epochs):
            if start_batch == 0:
                torch.manual_seed(derive_seed(recipe.seed, epoch, "model"))
            bar = _progress_bar(progress, len(loader), start_batch, f"epoch {epoch + 1}/{recipe.epochs}")
            try:
                totals = train_epoch(model, loader, optimizer, scheduler, recipe, epoch=epoch, ema=ema,
                                     start_batch=start_batch, totals=totals, should_stop=stop, progress=bar,
                                     step_delay=step_delay)
            finally:
                if bar is not None:
                    bar.close()
            elapsed = elapsed0 + time.perf_counter() - run_t0
            if totals.steps < len(loader):  # stopped by Ctrl-C mid-epoch
                checkpoint(epoch, totals.steps, totals, elapsed)
                raise TrainingInterrupted(out, epoch, totals.steps)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": totals.loss_sum / max(1, totals.seen), "train_acc": totals.correct / max(1, totals.seen),
            }
            if val_loader is not None:
                record["val_loss"], record["val_acc"] = evaluate(eval_model, val_loader)
            record["test_loss"], record["test_acc"] = evaluate(eval_model, test_loader)
            record["lr"] = optimizer.param_groups[0]["lr"]
            record["images_per_s"] = totals.seen / max(totals.seconds, 1e-9)
            record["elapsed_s"] = elapsed0 + time.perf_counter() - run_t0
            append_jsonl(metrics_file, record)
            checkpoint(epoch + 1, 0, EpochTotals(), record["elapsed_s"])
            if progress:
                extra = f" val_acc {100 * record['val_acc']:.2f}%" if "val_acc" in record else ""
                print(f"epoch {epoch + 1}/{recipe.epochs}: train_loss {record['train_loss']:.4f} "
                      f"train_acc {100 * record['train_acc']:.2f}%{extra} test_loss {record['test_loss']:.4f} "
                      f"test_acc {100 * record['test_acc']:.2f}% {record['images_per_s']:.0f} img/s "
                      f"{record['elapsed_s']:.0f}s", file=sys.stderr, flush=True)
            last = record
            start_batch, totals = 0, EpochTotals()
            if stop():
                raise TrainingInterrupted(out, epoch + 1, 0)

    if not last:  # resumed a finished run: report its last epoch
        rows = read_jsonl(metrics_file)
        last = rows[-1] if rows else {}
    result = {
        "arch": arch.name, "data": data_name, "epochs": recipe.epochs, "out": str(out),
        "test_acc": last.get("test_acc"), "test_loss": last.get("test_loss"),
        "val_acc": last.get("val_acc"), "train_acc": last.get("train_acc"), "train_loss": last.get("train_loss"),
        "images_per_s": last.get("images_per_s"), "wall_s": last.get("elapsed_s"),
        "threads": torch.get_num_threads(), "checkpoint": str(ckpt_file),
    }
    return {k: v for k, v in result.items() if v is not None}


def _progress_bar(enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None, mininterval=0.5)
