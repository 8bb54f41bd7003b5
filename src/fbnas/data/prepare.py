"""Datasets made ready for a run: training (train / validation / test loaders) and searches (the weight and
architecture splits of FBNet: 80% trains the weights, 20% the architecture, seed 000 "DNAS").

Every split and order derives from the run's seed (:mod:`fbnas.seeding`), so a resumed run, another rank or
a trial in another process sees the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fbnas.data.datasets import ImageTensors, load_dataset
from fbnas.data.loader import AugmentConfig, BatchLoader, split_indices
from fbnas.errors import DataError, FbnasError
from fbnas.seeding import make_generator

EVAL_BATCH_SIZE = 1000


@dataclass
class TrainingData:
    """A dataset's train and test tensors, the train/validation split, and the options that made them."""

    train: ImageTensors
    test: ImageTensors
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    info: dict

    @property
    def num_classes(self) -> int:
        return int(self.train.num_classes)

    def loaders(self, batch_size: int, seed: int, augment: AugmentConfig | None, channels_last: bool,
                shard: tuple[int, int] | None = None) -> tuple[BatchLoader, dict[str, BatchLoader]]:
        """(shuffled training loader, evaluation loaders ``val`` (when held out) and ``test``); ``shard``: this
        rank's part of every global training batch (every rank evaluates the whole evaluation sets)."""
        train = BatchLoader(self.train, self.train_idx, batch_size, shuffle=True, augment=augment, seed=seed,
                            channels_last=channels_last, shard=shard)
        evals = {}
        if len(self.val_idx):
            evals["val"] = BatchLoader(self.train, self.val_idx, EVAL_BATCH_SIZE, shuffle=False,
                                       channels_last=channels_last)
        evals["test"] = BatchLoader(self.test, None, EVAL_BATCH_SIZE, shuffle=False, channels_last=channels_last)
        return train, evals


def load_training_data(name: str, data_dir: str | None = None, *, val_ratio: float = 0.0, seed: int = 0,
                       limit_train: int | None = None, limit_test: int | None = None,
                       image_size: int | None = None, input_size: int | None = None) -> TrainingData:
    """Load ``name``; keep the first ``limit_*`` samples; hold out ``val_ratio`` of the training set (by seed).

    ``input_size`` below the images' size (an architecture searched at a lower resolution) resizes both sets.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise FbnasError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    if name == "synthetic" and image_size is None:
        image_size = input_size  # generated at the architecture's size
    train_set = load_dataset(name, data_dir, train=True, image_size=image_size).subset(limit_train)
    test_set = load_dataset(name, data_dir, train=False, image_size=image_size).subset(limit_test)
    if tuple(train_set.images.shape[1:]) != tuple(test_set.images.shape[1:]):
        raise DataError(f"dataset {name!r}: training images are {_shape(train_set)}, test images {_shape(test_set)}; "
                        "both splits need the same square size and channels")
    test_set.mean, test_set.std = train_set.mean, train_set.std
    if image_size is None and input_size is not None and input_size < train_set.image_size:
        train_set, test_set = train_set.resized(input_size), test_set.resized(input_size)
    train_idx, val_idx = split_indices(len(train_set), val_ratio, seed)
    if len(train_idx) == 0:
        raise FbnasError("no training samples left (check --limit-train and --val-ratio)")
    info = {"name": name, "data_dir": str(data_dir) if data_dir is not None else None, "val_ratio": val_ratio,
            "limit_train": limit_train, "limit_test": limit_test, "image_size": image_size,
            "num_classes": int(train_set.num_classes), "train_samples": len(train_idx),
            "val_samples": len(val_idx), "test_samples": len(test_set)}
    return TrainingData(train_set, test_set, train_idx, val_idx, info)


def _shape(data: ImageTensors) -> str:
    c, h, w = data.images.shape[1:]
    return f"{c}x{h}x{w}"


# ---- searches ---------------------------------------------------------------------------------------
@dataclass
class SearchData:
    weights: BatchLoader  # trains the supernet's weights
    arch: BatchLoader  # trains the architecture parameters
    num_classes: int


def search_loaders(name: str, data_dir: str | None, *, subset: int | None, theta_split: float, batch_size: int,
                   seed: int, augment: bool, channels_last: bool, in_channels: int, input_size: int,
                   source: str = "config", shard: tuple[int, int] | None = None) -> SearchData:
    """The weight and architecture splits of a search, deterministic in (seed, epoch); both must hold a batch.
    ``shard=(rank, size)``: this rank's equal part of every global batch of ``batch_size`` (a multiple of size)."""
    if shard is not None and shard[1] > 1 and batch_size % shard[1]:
        raise FbnasError(f"{source}: data.batch_size: {batch_size} is the global batch and must be a multiple of "
                         f"the {shard[1]} ranks")
    data = load_dataset(name, data_dir=data_dir, train=True, image_size=input_size if name == "synthetic" else None)
    if data.images.shape[1] != in_channels or data.images.shape[-1] != input_size:
        raise FbnasError(f"space.in_channels/space.input_size: the dataset {name!r} has images of "
                         f"{tuple(data.images.shape[1:])}, the space expects {in_channels}x{input_size}x"
                         f"{input_size}")
    n = len(data.labels)
    if subset is not None and subset > n:
        raise FbnasError(f"{source}: data.subset: {subset} is more than the {n} training images of {name!r}")
    subset_idx = (torch.randperm(n, generator=make_generator(seed, "subset"))[:subset]
                  if subset is not None and subset < n else torch.arange(n))
    w_pos, t_pos = split_indices(len(subset_idx), theta_split, seed)
    w_idx = subset_idx[torch.as_tensor(w_pos, dtype=torch.long)]
    t_idx = subset_idx[torch.as_tensor(t_pos, dtype=torch.long)]
    aug = AugmentConfig() if augment else None
    out = SearchData(BatchLoader(data, indices=w_idx, batch_size=batch_size, shuffle=True, augment=aug, seed=seed,
                                 channels_last=channels_last, drop_last=True, shard=shard),
                     BatchLoader(data, indices=t_idx, batch_size=batch_size, shuffle=True, augment=None,
                                 seed=seed + 1, channels_last=channels_last, drop_last=True, shard=shard),
                     int(data.num_classes))
    if len(out.weights) == 0 or len(out.arch) == 0:
        raise FbnasError(f"{source}: data.batch_size: {batch_size} is larger than a split ({len(out.weights)} "
                         f"weight / {len(out.arch)} theta batches); lower it or raise data.subset")
    return out

