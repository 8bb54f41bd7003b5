"""Training checkpoints: ``checkpoint.pt`` of a train run folder (:class:`fbnas.runs.RunFolder`).

Keys: schema (``fbnas.train/1``), arch (spec dict), num_classes, model, ema (or None), ema_state, optimizer,
scheduler, rng, epoch (completed epochs), step (batches done in the next, partial epoch; 0 at an epoch
boundary), partial (running train totals of that partial epoch), elapsed_s, history (the epoch records),
recipe (dict), data (name, options), threads. Tensors and plain data only: loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError
from fbnas.runs import RunFolder, load_checkpoint_file

CHECKPOINT_NAME = RunFolder.CHECKPOINT


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``DIR`` -> ``DIR/checkpoint.pt``; a file path is returned unchanged."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training checkpoint; a missing, corrupt or foreign file is a one-line FbnasError."""
    p = checkpoint_path(path)
    state = load_checkpoint_file(p, "train")
    if "arch" not in state or "model" not in state:
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
