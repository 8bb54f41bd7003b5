"""One place for randomness: seeds, keyed generators and the process RNG state of checkpoints.

Every random draw of a run is keyed, never taken from a shared global stream, so a resumed run, another DDP
rank or a trial in another process draws the same values. There is one derivation: :func:`derive_seed` hashes
the key (the run's seed and the draw's names and numbers: ``(seed, epoch, "split")``, ``(seed, step,
stream)``) with BLAKE2b. :func:`step_generator` is the key ``(seed, step, stream)`` of a search's per-step
draws (architecture samples), with the streams named in :data:`STREAMS` so that two kinds of draws never
share a key.

The global torch / numpy / python states are still seeded (:func:`seed_everything`) for library code that
draws from them, and saved in checkpoints as tensors and plain data (:func:`rng_state`), which
``torch.load(weights_only=True)`` reads back.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# stream ids of step_seed: searches (weights, architecture, result samples), latency tables (validation
# networks, correction fit, reference networks), space sampling
STREAMS: dict[str, int] = {"weights": 0, "theta": 1, "samples": 2, "lut_validate": 0, "lut_fit": 1,
                           "lut_reference": 3}


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a key (seed, epoch, batch, name, ...): stable across processes and platforms."""
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """The seed of draw ``step`` in ``stream`` of a run seeded ``seed``."""
    return derive_seed(int(seed), "step", int(step), int(stream))


def make_generator(*parts: int | str) -> torch.Generator:
    """A CPU torch generator seeded from :func:`derive_seed` of ``parts``."""
    import torch

    return torch.Generator().manual_seed(derive_seed(*parts))


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU torch generator seeded from :func:`step_seed`: reproducible and identical on every rank."""
    import torch

    return torch.Generator().manual_seed(step_seed(seed, step, stream))


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))


def seed_everything(seed: int) -> None:
    """Seed the global python, numpy and torch generators (for code that draws from them)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain data (loadable with ``weights_only=True``)."""
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
