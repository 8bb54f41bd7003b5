"""Gumbel-softmax sampling with noise derived from (seed, step), so every DDP rank draws the same sample."""

from __future__ import annotations

import math

import torch


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, step, stream): reproducible and identical on every rank."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(step) * 9_176 + int(stream) * 7_919) % (2**63 - 1))
    return g


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
