"""fbnas.data: in-memory image datasets and a fast whole-batch loader.

Public API: :func:`load_dataset` -> :class:`ImageTensors`, :func:`split_indices`, :class:`BatchLoader`,
:class:`AugmentConfig`, :func:`augment_batch`, :func:`mixup_batch`; runs: :mod:`fbnas.data.prepare`.
"""

from fbnas.data.datasets import DATASETS, ImageTensors, load_dataset, read_idx
from fbnas.data.loader import (
    AugmentConfig,
    BatchLoader,
    augment_batch,
    mixup_batch,
    split_indices,
)
from fbnas.errors import DataError

__all__ = [
    "DATASETS", "AugmentConfig", "BatchLoader", "DataError", "ImageTensors", "augment_batch", "load_dataset",
    "mixup_batch", "read_idx", "split_indices",
]
