"""Training checkpoints: one ``checkpoint.pt`` per run folder, written atomically each epoch.

Keys: arch (spec dict), num_classes, model, ema (or None), optimizer, scheduler, rng, epoch (completed epochs),
step (batches done in the next, partial epoch; 0 at an epoch boundary), partial (running train totals of that
partial epoch), elapsed_s, recipe (dict), data (name, options), threads.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fbnas.errors import FbnasError

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``DIR`` -> ``DIR/checkpoint.pt``; a file path is returned unchanged."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    from fbnas.io import atomic_torch_save

    return atomic_torch_save(path, state)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint (tensors and plain data only); a missing or corrupt file is a one-line FbnasError."""
    p = checkpoint_path(path)
    if not p.exists():
        raise FbnasError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FbnasError(f"{p}: not a readable fbnas checkpoint ({first})") from None
    if not isinstance(state, dict) or "arch" not in state or "model" not in state:
        raise FbnasError(f"{p}: not an fbnas training checkpoint (no 'arch'/'model')")
    return state


def model_from_checkpoint(path: str | os.PathLike):
    """Rebuild the trained model (EMA weights when the run kept an EMA) and its spec, in eval mode.

    Returns ``(model, spec)``; ``spec`` has the dataset's in_channels and input_size.
    """
    from fbnas.arch.spec import ArchSpec
    from fbnas.nn.model import build_model

    state = load_checkpoint(path)
    spec = ArchSpec.from_dict(state["arch"], source=str(checkpoint_path(path)))
    model = build_model(spec, int(state["num_classes"]))
    weights = state["ema"] if state.get("ema") is not None else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise FbnasError(f"{checkpoint_path(path)}: weights do not match the arch ({str(e).splitlines()[0]})") from None
    return model.eval(), spec


# ---- RNG states (as tensors and plain data, so weights_only loading works) -------------------------
def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
