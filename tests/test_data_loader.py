"""Split determinism, whole-batch augmentation (shapes, determinism, correctness), loader batching, mixup."""

from __future__ import annotations

import torch

from fbnas.data import (
    AugmentConfig,
    BatchLoader,
    ImageTensors,
    augment_batch,
    mixup_batch,
    split_indices,
)
from fbnas.seeding import make_generator


def _data(n: int = 50, c: int = 1, size: int = 8) -> ImageTensors:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    return ImageTensors(images, torch.arange(n) % 10, 10, (0.5,) * c, (0.25,) * c, "toy")


def test_split_is_deterministic_disjoint_and_complete():
    a_tr, a_val = split_indices(1000, 0.1, seed=3)
    b_tr, b_val = split_indices(1000, 0.1, seed=3)
    c_tr, c_val = split_indices(1000, 0.1, seed=4)
    assert torch.equal(a_tr, b_tr) and torch.equal(a_val, b_val)
    assert not torch.equal(a_val, c_val)
    assert len(a_val) == 100 and len(a_tr) == 900
    assert torch.equal(torch.cat([a_tr, a_val]).sort().values, torch.arange(1000))
    tr, val = split_indices(10, 0.0, seed=0)
    assert len(val) == 0 and torch.equal(tr, torch.arange(10))


def test_augment_shapes_and_determinism():
    x = _data(c=3).images[:16]
    cfg = AugmentConfig(crop_padding=2, hflip=True)
    a = augment_batch(x, cfg, make_generator(0, 1, 2))
    b = augment_batch(x, cfg, make_generator(0, 1, 2))
    c = augment_batch(x, cfg, make_generator(0, 1, 3))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_is_a_shifted_or_flipped_crop_of_each_image():
    x = _data(n=64).images
    p = 2
    out = augment_batch(x, AugmentConfig(crop_padding=p, hflip=True), make_generator(5))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    h = x.shape[-1]
    flipped = 0
    for i in range(x.shape[0]):
        candidates = [padded[i, :, dy:dy + h, dx:dx + h] for dy in range(2 * p + 1) for dx in range(2 * p + 1)]
        plain = any(torch.equal(out[i], cand) for cand in candidates)
        flip = any(torch.equal(out[i], cand.flip(-1)) for cand in candidates)
        assert plain or flip
        flipped += int(flip and not plain)
    assert 10 < flipped < 54  # about half are flipped


def test_no_augment_is_identity():
    x = _data().images
    assert torch.equal(augment_batch(x, AugmentConfig(crop_padding=0, hflip=False), make_generator(0)), x)


def test_loader_batches_normalizes_and_replays_epochs():
    data = _data(n=50)
    loader = BatchLoader(data, batch_size=16, augment=None, shuffle=True, seed=7)
    assert len(loader) == 4
    assert len(BatchLoader(data, batch_size=16, drop_last=True)) == 3
    loader.set_epoch(2)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [16, 16, 16, 2]
    labels = torch.cat([b[1] for b in batches])
    assert torch.equal(labels.sort().values, data.labels.sort().values)  # a permutation of the epoch
    x0 = batches[0][0]
    assert x0.dtype == torch.float32
    # normalization: (u8 / 255 - 0.5) / 0.25 of the selected samples
    order = loader.order()
    expect = (data.images[order[:16]].float() / 255 - 0.5) / 0.25
    assert torch.allclose(x0, expect, atol=1e-5)
    loader.set_epoch(2)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    loader.set_epoch(3)
    assert not torch.equal(next(iter(loader))[1], batches[0][1])
    # resuming mid-epoch yields the same remaining batches
    loader.set_epoch(2, start_batch=2)
    rest = list(loader)
    assert len(rest) == 2 and torch.equal(rest[0][0], batches[2][0])


def test_loader_subset_and_channels_last():
    data = _data(n=40, c=3)
    idx = torch.tensor([1, 5, 7])
    loader = BatchLoader(data, idx, batch_size=8, shuffle=False, channels_last=True,
                         augment=AugmentConfig(crop_padding=1))
    (x, y), = list(loader)
    assert x.shape == (3, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, data.labels[idx])


def test_mixup_mixes_with_a_permutation():
    x = torch.randn(8, 1, 4, 4)
    y = torch.arange(8)
    mixed, ya, yb, lam = mixup_batch(x, y, 0.4, make_generator(1))
    assert 0.0 <= lam <= 1.0 and torch.equal(ya, y)
    perm = yb  # labels are the identity, so yb is the permutation
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm], atol=1e-6)
    again = mixup_batch(x, y, 0.4, make_generator(1))
    assert again[3] == lam and torch.equal(again[2], yb)
