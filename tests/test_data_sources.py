"""CIFAR-10 pickle batches and image folders, on small files made here."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fbnas.data import DataError, load_dataset


def _cifar_folder(root, n: int = 6):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    return root


def test_cifar10_batches(tmp_path):
    _cifar_folder(tmp_path)
    tr = load_dataset("cifar10", tmp_path, train=True)
    te = load_dataset("cifar10", tmp_path, train=False)
    assert tr.images.shape == (30, 3, 32, 32) and te.images.shape == (6, 3, 32, 32)
    assert tr.labels.tolist()[:6] == list(range(6)) and tr.num_classes == 10 and len(tr.mean) == 3
    with open(tmp_path / "test_batch", "rb") as f:
        raw = pickle.load(f)
    # row-major CHW layout of the pickle: first 1024 bytes are the red plane
    assert torch.equal(te.images[0, 0].flatten(), torch.from_numpy(raw[b"data"][0, :1024].copy()))


def test_cifar10_bad_batch_names_the_file(tmp_path):
    _cifar_folder(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path, train=True)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", tmp_path, train=False)


def test_imagefolder_resizes_and_labels_by_folder(tmp_path):
    for split in ("train", "test"):
        for ci, cname in enumerate(("cat", "dog")):
            d = tmp_path / split / cname
            d.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20 + i, 16), (100 * ci, 50, 200)).save(d / f"{i}.png")
    tr = load_dataset("imagefolder", tmp_path, train=True, image_size=12)
    te = load_dataset("imagefolder", tmp_path, train=False, image_size=12)
    assert tr.images.shape == (6, 3, 12, 12) and te.images.shape == (6, 3, 12, 12)
    assert tr.labels.tolist() == [0, 0, 0, 1, 1, 1] and tr.classes == ("cat", "dog") and tr.num_classes == 2
    assert int(tr.images[3, 0, 5, 5]) == 100 and int(tr.images[0, 0, 5, 5]) == 0


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset("imagefolder", tmp_path / "nope")
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="x.png"):
        load_dataset("imagefolder", tmp_path, train=True)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist-xl", tmp_path)
