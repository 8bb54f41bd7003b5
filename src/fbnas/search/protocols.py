"""What the search loop needs of a supernet, a cost model and an architecture update: declared protocols.

The weight/architecture loop (:mod:`fbnas.search.alternating`) is written against these alone, so FBNetV1's
Gumbel supernet, FBNetV2's masked one and later strategies (FP-NAS's sampled single path) plug in unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class ArchSample:
    """The architecture weights of one step: ``weights[d]`` is ``[K_d]`` (per batch) or ``[B, K_d]`` (per sample)
    for every dimension ``d`` of the space."""

    weights: list[torch.Tensor]
    tau: float
    hard: bool

    def choices(self) -> list[int]:
        """Sampled option per dimension (per-sample weights: the most frequent one)."""
        out = []
        for w in self.weights:
            idx = w.detach().argmax(dim=-1)
            out.append(int(idx) if idx.dim() == 0 else int(torch.mode(idx).values))
        return out


@runtime_checkable
class Supernet(Protocol):
    """A network over every architecture of a space, run with one :class:`ArchSample` per step."""

    def weight_parameters(self) -> list[nn.Parameter]: ...

    def arch_parameters(self) -> list[nn.Parameter]: ...

    def probabilities(self) -> list[torch.Tensor]: ...

    def argmax_choices(self) -> list[int]: ...

    def arch_weights(self, tau: float, generator: torch.Generator, batch_size: int | None = None,
                     hard: bool | None = None) -> ArchSample: ...

    def fixed_weights(self, choices: list[int]) -> ArchSample: ...

    def __call__(self, x: torch.Tensor, sample: ArchSample) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@runtime_checkable
class CostModel(Protocol):
    """An architecture's resource cost in ``unit``: differentiable in the weights, exact for one architecture."""

    kind: str
    unit: str

    def expected(self, weights: list[torch.Tensor]) -> torch.Tensor: ...

    def of_choices(self, choices: list[int]) -> float: ...

    def min_max(self) -> tuple[float, float]: ...


@runtime_checkable
class ArchitectureUpdate(Protocol):
    """How the architecture parameters learn: FBNetV1/V2's Gumbel-softmax update (an epoch of architecture steps
    after each weight epoch), FP-NAS's sampled update (one architecture step after each weight step)."""

    per_step: bool  # True: the loop interleaves arch_step with the weight steps; False: train_epoch after them

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        """What the epoch's record shows of the update (e.g. the temperature); called as every epoch starts."""
        ...

    def weight_step(self, net: Supernet, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, float]:
        """Forward and backward of the weight loss at ``step`` (the loop zeroes the gradients before and steps the
        optimizer after); returns the batch's ``ce`` (mean), ``correct`` (count), optionally ``loss`` (the whole loss,
        checked finite, not logged) and any other per-batch means."""
        ...

    def train_epoch(self, net: Supernet, loader: Any, epoch: int) -> dict[str, float]:
        """One epoch of architecture steps on ``loader`` (``per_step`` False); returns the epoch's metrics."""
        ...

    def arch_step(self, net: Supernet, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, float]:
        """One architecture step on a batch (``per_step`` True); returns per-batch means."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
