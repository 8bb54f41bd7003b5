"""Gumbel-softmax sampling; the noise comes from a generator keyed by (seed, step, stream)
(:func:`fbnas.seeding.step_generator`), so every DDP rank and a resumed run draw the same sample."""

from __future__ import annotations

import math

import torch


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, dtype=dtype).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def gumbel_softmax(logits: torch.Tensor, tau: float, noise: torch.Tensor, hard: bool = False) -> torch.Tensor:
    """softmax((logits + g) / tau) over the last dim (FBNet eq. 8); ``hard`` is straight-through one-hot.

    The hard form's forward value is exactly one-hot and its gradient is that of the relaxed weights.
    """
    soft = torch.softmax((logits + noise.to(logits.dtype)) / tau, dim=-1)
    if not hard:
        return soft
    index = soft.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


def temperature(epoch: int, tau0: float = 5.0, decay: float = 0.045) -> float:
    """tau_0 * exp(-decay * epoch): FBNet's 5.0 x exp(-0.045) per epoch."""
    return tau0 * math.exp(-decay * epoch)
