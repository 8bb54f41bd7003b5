"""A spec whose input size is below the dataset's (a resolution-searched architecture) trains at its size."""

from __future__ import annotations

import torch

from fbnas.data.datasets import ImageTensors


def _split(n: int = 6, size: int = 28) -> ImageTensors:
    images = torch.randint(0, 256, (n, 1, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return ImageTensors(images, torch.arange(n) % 3, 3, (0.5,), (0.25,), "toy")


def test_resized_keeps_labels_and_downsamples_means():
    data = _split()
    small = data.resized(20)
    assert small.images.shape == (6, 1, 20, 20) and small.images.dtype == torch.uint8
    assert torch.equal(small.labels, data.labels)
    # antialiased downsampling preserves each image's mean brightness within a couple of grey levels
    assert torch.allclose(small.images.float().mean((1, 2, 3)), data.images.float().mean((1, 2, 3)), atol=2.0)
    assert data.resized(28) is data


def test_constant_image_stays_constant():
    data = ImageTensors(torch.full((2, 1, 28, 28), 77, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), 1,
                        (0.5,), (0.25,), "flat")
    assert torch.all(data.resized(24).images == 77)
