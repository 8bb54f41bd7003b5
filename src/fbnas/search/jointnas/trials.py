"""A JointNAS trial: one (architecture, recipe) candidate trained on the proxy through :func:`fbnas.train.fit`,
in this process or in an executor's worker, and persisted in ``trials/<id>/`` before the worker takes its next
task (seed 000, "FBNet V3": candidates are trained on a subset and early-stopped).

The proxy data are a training subset and a held-out validation subset of the dataset's *training* split,
drawn once by the run's seed (the test split stays for the final retraining). A candidate at a lower input
resolution sees the same images subsampled. ``trials/<id>/result.json`` is written last and atomically: a
trial is finished exactly when it exists, and a finished trial is never trained again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError
from fbnas.runs import RunFolder

ROLES = ("calibration", "coarse", "verify", "random")


@dataclass(frozen=True)
class ProxyData:
    """Which images a trial trains and validates on (plain data: it travels to workers)."""

    name: str
    dir: str | None
    train_images: int
    val_images: int
    seed: int
    channels_last: bool = True
    bn_images: int = 512  # training images the BN statistics are recomputed on before each evaluation


@dataclass(frozen=True)
class TrialTask:
    trial_dir: str
    trial_id: str
    role: str
    sample: dict[str, Any]  # the joint sample
    arch: dict[str, Any]  # the arch spec it builds
    recipe: dict[str, Any]  # the full Recipe (epochs: the schedule's length)
    stop_epoch: int | None  # stop after this many epochs (None: train all of recipe.epochs)
    data: ProxyData
    num_classes: int
    costs: dict[str, Any] = field(default_factory=dict)


_DATA: dict[tuple, Any] = {}


def proxy_split(n: int, data: ProxyData) -> tuple[Any, Any]:
    """(training, validation) indices of the proxy: a permutation of the training split keyed by the seed."""
    import torch

    from fbnas.seeding import make_generator

    if data.train_images + data.val_images > n:
        raise FbnasError(f"jointnas.proxy: train_images + val_images ({data.train_images} + {data.val_images}) is "
                         f"more than the {n} training images of {data.name!r}")
    perm = torch.randperm(n, generator=make_generator(data.seed, "jointnas", "proxy"))
    return perm[:data.train_images], perm[data.train_images:data.train_images + data.val_images]


def proxy_tensors(data: ProxyData, size: int):
    """The training split at ``size`` px and the proxy indices (cached per process)."""
    from fbnas.data.datasets import load_dataset

    base_key = (data.name, data.dir, None)
    if base_key not in _DATA:
        _DATA[base_key] = load_dataset(data.name, data.dir, train=True)
    base = _DATA[base_key]
    key = (data.name, data.dir, int(size))
    if key not in _DATA:
        _DATA[key] = base.resized(int(size)) if size < base.image_size else base
    train_idx, val_idx = proxy_split(len(base), data)
    return _DATA[key], train_idx, val_idx


def recalibrated(model: Any, loader: Any) -> Any:
    """A copy of ``model`` whose BN statistics are the exact averages over ``loader`` (precise BN).

    A proxy run is a few dozen steps: the running averages (momentum 0.1) still lag behind weights that move
    fast, and the lag compounds over a deep network until the eval-mode network predicts little better than
    chance while its train-mode accuracy is fine. Recomputing them on a fixed set of training images before
    each evaluation measures the candidate, not the lag (the training itself is untouched).
    """
    import copy

    import torch
    from torch import nn

    m = copy.deepcopy(model).eval()
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    loader.set_epoch(0)
    with torch.no_grad():
        for images, _ in loader:
            m(images)
    return m.eval()


class _Stop:
    """fit() callback: validates after every epoch (on a BN-recalibrated copy), stops after ``stop_epoch``
    epochs, or at once when the driver process is gone."""

    def __init__(self, stop_epoch: int | None, folder: RunFolder, val: Any, bn: Any) -> None:
        self.stop_epoch, self.folder, self.epochs, self.history = stop_epoch, folder, 0, []
        self.val, self.bn = val, bn
        self.orphaned = False

    def on_step(self, *args: Any) -> None:
        pass

    def on_epoch_end(self, record: dict[str, Any], state: Any) -> None:
        from fbnas.train.fit import evaluate

        model = state.eval_model if self.bn is None else recalibrated(state.eval_model, self.bn)
        record["val_loss"], record["val_acc"] = evaluate(model, self.val)
        self.epochs += 1
        self.history.append(record)
        self.folder.write_metrics(self.history)

    def on_interrupt(self, state: Any) -> None:
        pass

    def should_stop(self) -> bool:
        from fbnas.search.executors import parent_alive

        if not parent_alive():
            self.orphaned = True
            return True
        return self.stop_epoch is not None and self.epochs >= self.stop_epoch


def run_trial(task: TrialTask) -> dict[str, Any]:
    """Train the task's candidate (unless its trial is finished) and return ``trials/<id>/result.json``."""
    import torch

    from fbnas.arch.spec import ArchSpec
    from fbnas.data.loader import BatchLoader
    from fbnas.nn.model import build_model
    from fbnas.runtime import tune_allocator
    from fbnas.seeding import derive_seed
    from fbnas.train.fit import augment_config, fit, prepare_model
    from fbnas.train.recipe import Recipe

    folder = RunFolder(task.trial_dir, "trial")
    if folder.is_finished:
        done = folder.read_result()
        if done is not None:
            return done
    tune_allocator()
    recipe = Recipe.from_dict(task.recipe, f"trial {task.trial_id} recipe")
    arch = ArchSpec.from_dict(task.arch, f"trial {task.trial_id} arch")
    tensors, train_idx, val_idx = proxy_tensors(task.data, arch.input_size)
    threads_before = torch.get_num_threads()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.start({"trial": task.trial_id, "role": task.role, "sample": task.sample, "arch": task.arch,
                  "recipe": recipe.to_dict(), "stop_epoch": task.stop_epoch, "data": vars(task.data)},
                 seed=recipe.seed)
    loader = BatchLoader(tensors, train_idx, recipe.batch_size, shuffle=True, augment=augment_config(recipe),
                         seed=recipe.seed, channels_last=recipe.channels_last)
    val = BatchLoader(tensors, val_idx, 1000, shuffle=False, channels_last=recipe.channels_last)
    bn = None
    if task.data.bn_images:
        bn = BatchLoader(tensors, train_idx[:task.data.bn_images], recipe.batch_size, shuffle=False,
                         channels_last=recipe.channels_last)
    torch.manual_seed(derive_seed(recipe.seed, "init"))
    model = prepare_model(build_model(arch, task.num_classes), recipe)
    stop = _Stop(task.stop_epoch, folder, val, bn)
    t0 = time.perf_counter()
    diverged = None
    try:
        out = fit(model, loader, recipe, callbacks=[stop])
        if stop.orphaned:
            raise FbnasError(f"trial {task.trial_id}: the search that started it is gone; stopped")
        history = out.history
    except FbnasError as e:
        if stop.orphaned or "diverged" not in str(e):
            raise
        history, diverged = stop.history, str(e)
    finally:
        torch.set_num_threads(threads_before)
    curve = [float(r["val_acc"]) for r in history]
    chance = 1.0 / task.num_classes
    target = task.stop_epoch or recipe.epochs
    if diverged is not None:  # a diverged run is as good as chance from its last finished epoch on
        curve = curve + [chance] * (target - len(curve))
    curve = [c if math.isfinite(c) else chance for c in curve]
    result = {"id": task.trial_id, "role": task.role, "sample": task.sample, "arch": task.arch,
              "recipe": recipe.to_dict(), "stop_epoch": task.stop_epoch, "epochs_trained": len(history),
              "curve": curve, "acc": curve[-1], "diverged": diverged, "costs": task.costs,
              "metrics": history, "wall_s": time.perf_counter() - t0}
    folder.finish(result)
    return result


def read_finished(trials_dir: Path) -> dict[str, dict[str, Any]]:
    """Every finished trial under ``trials_dir`` (id -> result)."""
    out = {}
    if trials_dir.is_dir():
        for d in sorted(trials_dir.iterdir()):
            folder = RunFolder(d, "trial")
            if d.is_dir() and folder.is_finished:
                res = folder.read_result()
                if res is not None:
                    out[d.name] = res
    return out
