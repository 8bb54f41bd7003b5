"""Batches straight from in-memory uint8 tensors, augmented on whole batches.

Every random draw comes from a generator seeded by (seed, epoch[, batch]), so an epoch can be replayed or
resumed from any batch bit-exactly without saving loader state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fbnas.data.datasets import ImageTensors
from fbnas.seeding import make_generator


def split_indices(n: int, val_ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train_idx, val_idx) split of ``range(n)``: ``round(n * val_ratio)`` go to validation."""
    if not 0.0 <= val_ratio < 1.0:
        from fbnas.errors import FbnasError

        raise FbnasError(f"val_ratio must be in [0, 1), got {val_ratio!r}")
    perm = torch.randperm(n, generator=make_generator(seed, "split"))
    n_val = int(round(n * val_ratio))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


@dataclass
class AugmentConfig:
    """Training augmentation: random crop after zero padding, horizontal flip (normalize always runs)."""

    crop_padding: int = 2
    hflip: bool = True


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random crop (with ``crop_padding`` zeros around) and flip of a uint8 batch (B, C, H, W) as one flat gather."""
    b, c, h, w = images.shape
    p = max(0, int(cfg.crop_padding))
    if p == 0 and not cfg.hflip:
        return images
    hp, wp = h + 2 * p, w + 2 * p
    src = F.pad(images, (p, p, p, p)) if p > 0 else images
    oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    cols = torch.arange(w).expand(b, w)
    if cfg.hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(flip.view(b, 1), (w - 1) - cols, cols)
    start = (torch.arange(b) * (c * hp * wp) + oy * wp + ox).view(b, 1, 1, 1)
    offset = (torch.arange(c) * (hp * wp)).view(1, c, 1, 1) + (torch.arange(h) * wp).view(1, 1, h, 1)
    return src.reshape(-1)[start + offset + cols.reshape(b, 1, 1, w)]


def mixup_batch(images: torch.Tensor, labels: torch.Tensor, alpha: float, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup: ``(lam * x + (1 - lam) * x[perm], y, y[perm], lam)`` with lam ~ Beta(alpha, alpha)."""
    import numpy as np

    lam = float(np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator))).beta(alpha, alpha))
    perm = torch.randperm(images.shape[0], generator=generator)
    mixed = images.mul(lam).add_(images[perm], alpha=1.0 - lam)
    return mixed, labels, labels[perm], lam


class BatchLoader:
    """Iterate (float normalized images, int64 labels) batches of an :class:`ImageTensors`.

    ``indices`` restricts to a subset (e.g. a train/val split). With ``shuffle`` the order is a permutation
    drawn from (seed, epoch); augmentation of batch ``i`` uses a generator from (seed, epoch, i). Call
    :meth:`set_epoch` before each epoch; ``start_batch`` skips the first batches (mid-epoch resume).

    ``shard=(rank, size)`` (data-parallel runs, :mod:`fbnas.distributed`): ``batch_size`` is the *global* batch
    and this loader yields rank ``rank``'s part of every global batch (``torch.tensor_split`` of it, augmented as
    a whole first, so the union of the shards is the single process's batch); a last partial batch smaller than
    ``size`` is left out on every rank.
    """

    def __init__(self, data: ImageTensors, indices: torch.Tensor | None = None, batch_size: int = 128,
                 shuffle: bool = True, augment: AugmentConfig | None = None, seed: int = 0,
                 channels_last: bool = False, drop_last: bool = False,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 shard: tuple[int, int] | None = None) -> None:
        if batch_size < 1:
            from fbnas.errors import FbnasError

            raise FbnasError(f"batch_size must be >= 1, got {batch_size}")
        self.data = data
        self.indices = indices if indices is not None else torch.arange(len(data))
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.channels_last = channels_last
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0
        self.shard = shard if shard is not None and shard[1] > 1 else None
        mean = data.mean if mean is None else mean
        std = data.std if std is None else std
        c = data.channels
        # x_norm = (x / 255 - mean) / std = x * scale + shift
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32).view(1, c, 1, 1)
        self._shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)],
                                   dtype=torch.float32).view(1, c, 1, 1)

    @property
    def num_samples(self) -> int:
        return int(self.indices.numel())

    def __len__(self) -> int:
        n = self.num_samples
        full, rest = divmod(n, self.batch_size)
        if self.drop_last or rest == 0:
            return full
        return full + 1 if self.shard is None or rest >= self.shard[1] else full

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return self.indices
        return self.indices[torch.randperm(self.num_samples, generator=make_generator(self.seed, self.epoch))]

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = images_u8.to(torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.mul_(self._scale).add_(self._shift)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        for b in range(self.start_batch, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.data.images[idx]
            if self.augment is not None:
                x = augment_batch(x, self.augment, make_generator(self.seed, self.epoch, b))
            y = self.data.labels[idx]
            if self.shard is not None:
                rank, size = self.shard
                x, y = torch.tensor_split(x, size)[rank], torch.tensor_split(y, size)[rank]
            yield self.normalize(x), y
