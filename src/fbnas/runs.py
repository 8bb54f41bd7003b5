"""The one run folder of training runs, searches and the trials run inside a search.

::

    DIR/manifest.json    kind, fbnas / torch versions, git commit, argv, seed, start and end times
    DIR/config.json      the resolved config, written when the run starts
    DIR/metrics.jsonl    one JSON row per epoch (rewritten from the checkpoint, so never ahead of or behind it)
    DIR/checkpoint.pt    everything needed to continue; tensors and plain data only, tagged with its kind
    DIR/result.json      the outcome (a search's architecture as a named sample and as an arch spec)
    DIR/plots/           figures
    DIR/trials/<id>/     a run folder per trial of a search (or per training run of a pipeline)

Every file is written atomically (:mod:`fbnas.io`). Checkpoints load with ``torch.load(weights_only=True)``,
so opening a run never unpickles code; the ``schema`` tag names the kind and version of the state inside.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fbnas.errors import DivergenceError, FbnasError
from fbnas.io import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    check_output,
    jsonl_text,
    read_jsonl,
    remove_orphaned_temps,
)

KINDS = ("train", "search", "trial", "pipeline")
SCHEMA_VERSION = 1


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git_commit() -> str | None:
    """The commit of the fbnas source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class RunFolder:
    MANIFEST = "manifest.json"
    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    CHECKPOINT = "checkpoint.pt"
    RESULT = "result.json"
    PLOTS = "plots"
    TRIALS = "trials"

    def __init__(self, path: str | os.PathLike, kind: str = "search") -> None:
        if kind not in KINDS:
            raise ValueError(f"run kind must be one of {KINDS}, got {kind!r}")
        self.path = Path(path)
        self.kind = kind

    # ---- layout -------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def plot(self, name: str) -> Path:
        return self.path / self.PLOTS / name

    def trial(self, trial_id: str, kind: str = "trial") -> RunFolder:
        return RunFolder(self.path / self.TRIALS / str(trial_id), kind)

    @property
    def has_checkpoint(self) -> bool:
        return self.file(self.CHECKPOINT).exists()

    @property
    def is_finished(self) -> bool:
        return self.file(self.RESULT).exists()

    @property
    def holds_run(self) -> bool:
        """A checkpoint or a result; for a pipeline (whose stages live in sub-folders), a started manifest."""
        started = self.kind == "pipeline" and self.file(self.MANIFEST).exists()
        return self.has_checkpoint or self.is_finished or started

    # ---- life cycle ---------------------------------------------------------------------------------
    def check_writable(self, what: str = "--out") -> None:
        """One line, before any work, when the folder cannot be created or written (creates nothing)."""
        check_output(self.path, what, "folder")

    def prepare(self, resume: bool, overwrite: bool = False) -> bool:
        """Create the folder; returns whether a checkpoint will be resumed.

        Refuses to start over a folder that already holds a run (a checkpoint or a result) unless ``resume``
        continues it or ``overwrite`` replaces it. The replaced run is moved aside (one atomic rename) and
        deleted only once the new run has written its first checkpoint; :meth:`restore_replaced` puts it back
        when the new run fails before that.
        """
        if self.path.exists() and not self.path.is_dir():
            raise FbnasError(f"{self.path}: exists and is not a folder; choose another --out")
        self.check_writable()
        if resume and overwrite:
            raise FbnasError("--resume and --overwrite exclude each other")
        if self.holds_run and not resume:
            if not overwrite:
                what = self.CHECKPOINT if self.has_checkpoint else (self.RESULT if self.is_finished else "a run")
                raise FbnasError(f"{self.path}: run folder already has {what}; pass --resume to continue it, "
                                 "--overwrite to replace it, or choose another --out")
            aside = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}-{int(time.time())}")
            os.replace(self.path, aside)
            self._replaced = aside
        self.path.mkdir(parents=True, exist_ok=True)
        remove_orphaned_temps(self.path, (self.PLOTS,))  # what a killed writer of this run left behind
        return self.holds_run and resume

    def _drop_replaced(self) -> None:
        aside = getattr(self, "_replaced", None)
        if aside is not None:
            import shutil

            shutil.rmtree(aside, ignore_errors=True)
            self._replaced = None

    def restore_replaced(self) -> None:
        """Put back the run that ``--overwrite`` moved aside (the new run failed before its first checkpoint)."""
        aside = getattr(self, "_replaced", None)
        if aside is not None and aside.exists():
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)
            os.replace(aside, self.path)
            self._replaced = None

    def start(self, config: dict[str, Any], seed: int | None = None, resumed: bool = False) -> None:
        """Write (or, on resume, update) the manifest; write config.json on a fresh start."""
        manifest = self.read_json(self.MANIFEST) if resumed else None
        if manifest is None:
            manifest = self._new_manifest(seed)
            resumed = False
        else:
            if not isinstance(manifest, dict):
                raise FbnasError(f"{self.file(self.MANIFEST)}: damaged run file (not a mapping)")
            manifest.setdefault("resumed_at", []).append(now_utc())
            manifest["ended_at"] = None
        atomic_write_json(self.file(self.MANIFEST), manifest)
        if not resumed or not self.file(self.CONFIG).exists():
            atomic_write_json(self.file(self.CONFIG), config)

    def _new_manifest(self, seed: int | None) -> dict[str, Any]:
        import torch

        from fbnas.version import __version__

        return {"kind": self.kind, "schema": SCHEMA_VERSION, "fbnas": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "git_commit": git_commit(), "argv": list(sys.argv),
                "seed": seed, "started_at": now_utc(), "ended_at": None}

    def record_stop(self, reason: str) -> None:
        """Note in the manifest why the run stopped before its end (a divergence), beside when."""
        manifest = self.read_json(self.MANIFEST)
        if isinstance(manifest, dict):
            manifest.setdefault("stops", []).append({"at": now_utc(), "reason": reason})
            atomic_write_json(self.file(self.MANIFEST), manifest)

    def diverged(self, error: Exception, describe: Callable[[dict[str, Any]], str]) -> DivergenceError:
        """The one-line stop of a diverged run, with what it kept: its last finite checkpoint (``describe(state)``
        says which), or the run that ``--overwrite`` had moved aside, put back unchanged."""
        pending = getattr(self, "_replaced", None) is not None
        self.record_stop(str(error))
        if pending:
            self.restore_replaced()
            kept = f"the previous run in {self.path} was put back unchanged"
        elif self.has_checkpoint:
            kept = f"kept {self.file(self.CHECKPOINT)} ({describe(self.load_checkpoint())})"
        else:
            kept = "no checkpoint was written"
        return DivergenceError(f"{self.path}: {error}; {kept}")

    def finish(self, result: dict[str, Any] | None = None) -> None:
        if result is not None:
            self.write_result(result)
        manifest = self.read_json(self.MANIFEST) or self._new_manifest(None)
        manifest["ended_at"] = now_utc()
        atomic_write_json(self.file(self.MANIFEST), manifest)

    # ---- files --------------------------------------------------------------------------------------
    def read_json(self, name: str) -> Any:
        p = self.file(name)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FbnasError(f"{p}: damaged run file ({type(e).__name__}); the run cannot continue from it") from None

    def read_config(self) -> dict[str, Any] | None:
        return self.read_json(self.CONFIG)

    def write_config(self, cfg: dict[str, Any]) -> Path:
        return atomic_write_json(self.file(self.CONFIG), cfg)

    def write_result(self, result: dict[str, Any]) -> Path:
        return atomic_write_json(self.file(self.RESULT), result)

    def read_result(self) -> dict[str, Any] | None:
        return self.read_json(self.RESULT)

    def write_metrics(self, rows: list[dict[str, Any]]) -> Path:
        """metrics.jsonl holding exactly ``rows`` (the checkpoint's history)."""
        return atomic_write_text(self.file(self.METRICS), jsonl_text(rows, str(self.file(self.METRICS))))

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.file(self.METRICS))

    # ---- checkpoints --------------------------------------------------------------------------------
    @property
    def state_kind(self) -> str:
        """What a checkpoint here holds: a search's state, or a training state (train runs and trials)."""
        return "search" if self.kind == "search" else "train"

    def schema(self) -> str:
        return f"fbnas.{self.state_kind}/{SCHEMA_VERSION}"

    def save_checkpoint(self, state: dict[str, Any], initial: bool = False) -> Path:
        """Write the checkpoint atomically. The first one after training (not ``initial``, a search's state
        before its first epoch) is what lets ``--overwrite`` delete the run it replaced."""
        path = atomic_torch_save(self.file(self.CHECKPOINT), {"schema": self.schema(), **state})
        if not initial:
            self._drop_replaced()  # the new run now has what the replaced one had: a trained checkpoint
        return path

    def load_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint_file(self.file(self.CHECKPOINT), self.state_kind)


def folder_checkpoint_or_result(path: str | os.PathLike) -> Path | None:
    """What a run folder's architecture is read from: a training run's checkpoint (its trained weights), a
    search's result.json; None for a path that is not a run folder."""
    p = Path(path)
    if not p.is_dir():
        return None
    ckpt, result = p / RunFolder.CHECKPOINT, p / RunFolder.RESULT
    kind = None
    try:
        kind = json.loads((p / RunFolder.MANIFEST).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        pass
    if kind in ("train", "trial") and ckpt.exists():
        return ckpt
    if result.exists():
        return result
    return ckpt if ckpt.exists() else None


def state_mismatch(module: Any, state: Any) -> str | None:
    """Why ``state`` (a state dict) cannot load into ``module``: missing or unexpected keys, or shapes that
    differ; None when it fits."""
    import torch

    if not isinstance(state, dict):
        return f"the weights are a {type(state).__name__}, not a state mapping"
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        if extra:
            parts.append(f"unexpected {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
        return "; ".join(parts)
    for k, v in own.items():
        w = state[k]
        if not isinstance(w, torch.Tensor):
            return f"{k} is a {type(w).__name__}, not a tensor"
        if tuple(w.shape) != tuple(v.shape):
            return f"{k} has shape {list(w.shape)} in the checkpoint, {list(v.shape)} in the model"
    return None


def load_module_state(module: Any, state: Any, source: str | os.PathLike) -> None:
    """``module.load_state_dict(state)``, or one line naming ``source`` and the first key that does not fit."""
    problem = state_mismatch(module, state)
    if problem:
        raise FbnasError(f"{source}: the checkpoint does not fit its architecture ({problem})")
    module.load_state_dict(state)


@contextlib.contextmanager
def restoring(source: str | os.PathLike) -> Iterator[None]:
    """Restoring live objects (optimizers, schedules, RNG) from a checkpoint: a missing entry or a state of
    another shape is one line naming ``source``, not a traceback."""
    try:
        yield
    except FbnasError:
        raise
    except KeyError as e:
        raise FbnasError(f"{source}: the checkpoint does not fit this run (no {e.args[0]!r})") from None
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise FbnasError(f"{source}: the checkpoint does not fit this run ({first})") from None


def load_checkpoint_file(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """A checkpoint (tensors and plain data only, ``weights_only=True``); with ``kind``, it must be of that kind.
    Every problem is one line naming the file."""
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if not p.is_file():
        raise FbnasError(f"{p}: checkpoint not found")
    if not zipfile.is_zipfile(p):
        raise FbnasError(f"{p}: not an fbnas checkpoint (not a file written by torch.save)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError) as e:
        text = str(e).strip()
        reason = "it holds objects other than tensors and plain data" if "Weights only" in text else (
            text.splitlines()[0][:200] if text else type(e).__name__)
        raise FbnasError(f"{p}: not a readable fbnas checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise FbnasError(f"{p}: not an fbnas checkpoint (no state mapping)")
    schema = state.get("schema")
    if kind is not None and schema is not None and not str(schema).startswith(f"fbnas.{kind}/"):
        raise FbnasError(f"{p}: a {schema} checkpoint, expected an fbnas {kind} checkpoint")
    return state
