"""``train()``: a training run in a run folder (config, metrics, checkpoints, resume, Ctrl-C) around :func:`fit`.

A checkpoint is written atomically after every epoch, and on Ctrl-C mid-epoch; a run resumed from it ends
with the weights of an uninterrupted run (same thread count, CPU).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from fbnas import distributed
from fbnas.errors import DivergenceError, FbnasError
from fbnas.runs import RunFolder, restoring, state_mismatch
from fbnas.train.fit import Callback, EpochTotals, Fit, augment_config, fit, prepare_model
from fbnas.train.recipe import Recipe


class TrainingInterrupted(Exception):
    """Raised by :func:`train` after Ctrl-C once the checkpoint is saved; ``str()`` says how to resume."""

    def __init__(self, out_dir: Path, epoch: int, step: int) -> None:
        super().__init__(f"interrupted in epoch {epoch + 1} after {step} steps; checkpoint saved; "
                         f"resume with: fbnas train --resume {out_dir}")
        self.out_dir, self.epoch, self.step = out_dir, epoch, step


class StopOnSigint(Callback):
    """First SIGINT asks the run to stop at the next batch boundary; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def should_stop(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nfbnas: Ctrl-C: saving a checkpoint at the end of this step (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Checkpoints(Callback):
    """Checkpoint and metrics.jsonl after every epoch; a checkpoint when stopped mid-epoch."""

    def __init__(self, folder: RunFolder, extra: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self.folder, self.extra, self.history = folder, extra, history

    def _save(self, state: Fit) -> None:
        self.folder.save_checkpoint({**self.extra, **state.state_dict(), "history": self.history,
                                     "threads": torch.get_num_threads()})

    def on_epoch_end(self, record: dict[str, Any], state: Fit) -> None:
        self.history.append(record)
        self._save(state)
        self.folder.write_metrics(self.history)

    def on_interrupt(self, state: Fit) -> None:
        self._save(state)


class Collect(Callback):
    """The history of a rank that writes nothing (the epoch records, as rank 0's checkpoints hold them)."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.history = history

    def on_epoch_end(self, record: dict[str, Any], state: Fit) -> None:
        self.history.append(record)


class Progress(Callback):
    """A progress bar per epoch and one line per finished epoch, on stderr."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.bar, self.bar_epoch = epochs, None, -1

    def on_step(self, epoch: int, totals: EpochTotals, steps_per_epoch: int, elapsed_s: float) -> None:
        if self.bar_epoch != epoch:
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(total=steps_per_epoch, initial=totals.steps - 1, desc=f"epoch {epoch + 1}/{self.epochs}",
                            file=sys.stderr, leave=False, dynamic_ncols=True, disable=None, mininterval=0.5)
            self.bar_epoch = epoch
        assert self.bar is not None
        self.bar.update(1)
        if totals.steps % 10 == 0 or totals.steps == steps_per_epoch:
            self.bar.set_postfix(loss=f"{totals.loss_sum / totals.seen:.3f}",
                                 acc=f"{100 * totals.correct / totals.seen:.1f}",
                                 img_s=f"{totals.seen / max(elapsed_s, 1e-9):.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, record: dict[str, Any], state: Fit) -> None:
        self.close()
        self.bar_epoch = -1
        extra = f" val_acc {100 * record['val_acc']:.2f}%" if "val_acc" in record else ""
        print(f"epoch {record['epoch']}/{self.epochs}: train_loss {record['train_loss']:.4f} "
              f"train_acc {100 * record['train_acc']:.2f}%{extra} test_loss {record['test_loss']:.4f} "
              f"test_acc {100 * record['test_acc']:.2f}% {record['images_per_s']:.0f} img/s "
              f"{record['elapsed_s']:.0f}s", file=sys.stderr, flush=True)

    def on_interrupt(self, state: Fit) -> None:
        self.close()


def train(spec: Any, recipe: Recipe | None, data_name: str, out_dir: str | Path, data_dir: str | Path | None = None,
          resume: bool = False, val_ratio: float = 0.0, progress: bool = True, *, limit_train: int | None = None,
          limit_test: int | None = None, image_size: int | None = None, step_delay: float = 0.0,
          overwrite: bool = False) -> dict[str, Any]:
    """Train ``spec`` (zoo name, spec file, dict or ArchSpec) on ``data_name`` with ``recipe``; return final metrics.

    The run folder ``out_dir`` gets manifest.json, config.json, metrics.jsonl (one line per epoch),
    checkpoint.pt (atomically, every epoch) and result.json. With ``resume`` the arch, recipe and data options
    come from the checkpoint (a given ``recipe`` only changes ``epochs``) and training continues bit-exactly.
    ``val_ratio`` > 0 holds out part of the training set (deterministic by seed) and reports val_loss/val_acc.
    ``limit_train``/``limit_test`` keep the first N samples (quick runs, tests). Ctrl-C saves a checkpoint and
    raises :class:`TrainingInterrupted`. Inputs are validated and data loaded before anything is written, so a
    bad input leaves no output behind.
    """
    from fbnas.arch.spec import ArchSpec
    from fbnas.arch.zoo import resolve_arch
    from fbnas.data.prepare import load_training_data
    from fbnas.nn.model import build_model
    from fbnas.runtime import set_threads, tune_allocator
    from fbnas.seeding import derive_seed

    tune_allocator()
    w = distributed.world()
    folder = RunFolder(out_dir, "train")
    ckpt = folder.file(folder.CHECKPOINT)

    def read_state() -> dict[str, Any] | None:  # rank 0 reads the folder, the other ranks receive it
        folder.check_writable()  # before any work
        if not resume:
            return None
        if not folder.has_checkpoint:
            raise FbnasError(f"{ckpt}: no checkpoint to resume from (the run stopped before its first checkpoint; "
                             "start it again without --resume)")
        return folder.load_checkpoint()

    state: dict[str, Any] | None = distributed.from_writer(read_state)
    if state is not None:
        if "arch" not in state or "model" not in state:
            raise FbnasError(f"{ckpt}: not an fbnas training checkpoint (no 'arch'/'model')")
        with restoring(ckpt):
            arch = ArchSpec.from_dict(state["arch"], source=str(ckpt))
            saved = Recipe.from_dict(state["recipe"], source=f"{ckpt} recipe")
            recipe = saved.replace(epochs=recipe.epochs) if recipe is not None else saved
            data_opts = dict(state["data"])
            data_name, val_ratio = data_opts["name"], float(data_opts.get("val_ratio", 0.0))
            limit_train, limit_test = data_opts.get("limit_train"), data_opts.get("limit_test")
            image_size = data_opts.get("image_size")
        if data_dir is None:
            data_dir = data_opts.get("data_dir")
    else:
        recipe = recipe if recipe is not None else Recipe()
        arch = resolve_arch(spec)
        def refuse() -> None:
            if (folder.has_checkpoint or folder.is_finished) and not overwrite:
                folder.prepare(resume=False)  # the one-line refusal, before any work

        distributed.from_writer(refuse)

    set_threads(recipe.threads)
    data = load_training_data(data_name, None if data_dir is None else str(data_dir), val_ratio=val_ratio,
                              seed=recipe.seed, limit_train=limit_train, limit_test=limit_test,
                              image_size=image_size, input_size=arch.input_size)
    if (arch.in_channels, arch.input_size) != (data.train.channels, data.train.image_size):
        arch = arch.copy(in_channels=data.train.channels, input_size=data.train.image_size)
        arch.validate(f"{arch.name} at {data.train.image_size}px")
    num_classes = data.num_classes
    loader, evals = data.loaders(recipe.batch_size, recipe.seed, augment_config(recipe), recipe.channels_last,
                                 shard=w.shard)

    torch.manual_seed(derive_seed(recipe.seed, "init"))
    model = prepare_model(build_model(arch, num_classes), recipe)
    run_state = Fit(model, recipe, len(loader))
    history: list[dict[str, Any]] = []
    if state is not None:
        problem = state_mismatch(run_state.model, state["model"])
        if problem:
            raise FbnasError(f"{ckpt}: the checkpoint does not fit its architecture ({problem})")
        with restoring(ckpt):
            run_state.load_state_dict(state)
        if state.get("threads") != torch.get_num_threads() and w.is_writer:
            print(f"fbnas: note: resuming with {torch.get_num_threads()} threads, the run used "
                  f"{state.get('threads')}; weights may differ from an uninterrupted run", file=sys.stderr)
        if int(state.get("world_size", 1)) != w.size and w.is_writer:
            print(f"fbnas: note: resuming with {w.size} rank(s), the run used {int(state.get('world_size', 1))}; it "
                  "continues (same global batch and schedule) but is not bit-exact with an uninterrupted run",
                  file=sys.stderr)
        saved = state.get("history") or (folder.read_metrics() if w.is_writer else [])
        history = list(saved)[:run_state.position.epoch]
    distributed.from_writer(lambda: folder.prepare(resume=state is not None, overwrite=overwrite))
    if not w.is_writer:  # the other ranks compute; rank 0 writes the run folder
        return _run(None, arch, recipe, data, (loader, evals), run_state, history, state is not None, False,
                    step_delay)
    try:
        return _run(folder, arch, recipe, data, (loader, evals), run_state, history, state is not None, progress,
                    step_delay)
    except DivergenceError as e:
        raise folder.diverged(e, _kept) from None
    except BaseException:
        folder.restore_replaced()
        raise


def _kept(state: dict[str, Any]) -> str:
    return (f"after epoch {int(state.get('epoch', 0))}; it resumes and exports, and a resume repeats the same "
            "steps, so train again with a lower lr: --overwrite")


def _run(folder: RunFolder | None, arch, recipe: Recipe, data, loaders, run_state: Fit,
         history: list[dict[str, Any]], resumed: bool, progress: bool, step_delay: float) -> dict[str, Any]:
    """The run itself, once the folder is ready: manifest and config, fit() with checkpoints, result.json
    (``folder`` None: a data-parallel rank other than 0, which computes the same steps and writes nothing)."""
    (loader, evals), num_classes, model = loaders, data.num_classes, run_state.model
    world_size = distributed.world().size
    extra = {"arch": arch.to_dict(), "num_classes": num_classes, "recipe": recipe.to_dict(), "data": data.info,
             "world_size": world_size}
    callbacks: list[Callback] = []
    if folder is not None:
        config = {"arch": arch.to_dict(), "recipe": recipe.to_dict(), "data": data.info,
                  "threads": torch.get_num_threads()}
        if world_size > 1:
            config["world_size"] = world_size
        folder.start(config, seed=recipe.seed, resumed=resumed)
        folder.write_metrics(history)
        callbacks.append(Checkpoints(folder, extra, history))
    else:
        callbacks.append(Collect(history))
    if progress:
        callbacks.append(Progress(recipe.epochs))
    with StopOnSigint() as stop:
        callbacks.append(stop)
        outcome = fit(model, loader, recipe, eval_loaders=evals, callbacks=callbacks, state=run_state,
                      step_delay=step_delay)
    if outcome.stopped:
        pos = outcome.state.position
        raise TrainingInterrupted(folder.path if folder is not None else Path("."), pos.epoch, pos.step)

    last = history[-1] if history else {}
    if folder is None:
        return {k: v for k, v in last.items() if v is not None}
    result = {
        "arch": arch.name, "data": data.info["name"], "epochs": recipe.epochs, "out": str(folder.path),
        "test_acc": last.get("test_acc"), "test_loss": last.get("test_loss"),
        "val_acc": last.get("val_acc"), "train_acc": last.get("train_acc"), "train_loss": last.get("train_loss"),
        "images_per_s": last.get("images_per_s"), "wall_s": last.get("elapsed_s"),
        "threads": torch.get_num_threads(), "checkpoint": str(folder.file(folder.CHECKPOINT)),
    }
    result = {k: v for k, v in result.items() if v is not None}
    folder.finish({**result, "spec": arch.to_dict(), "recipe": recipe.to_dict()})
    return result
