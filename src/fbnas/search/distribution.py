"""FP-NAS's architecture distribution P(A | alpha) (seed 002, sections 3.1-3.3) over a space's choice dimensions.

Layers are independent (eq. 2: ``P(A | alpha) = prod_l P(A^l | alpha^l)``); a layer is a ``group`` of the space, a
tuple of search variables. Two forms of a layer's distribution:

* **FD**, the factorized distribution (section 3.3, eq. 5): one categorical per variable,
  ``P(A^l) = prod_m P(A^l_m | alpha^l_m)``; ``sum_m |D_m|`` parameters (3 + 2 + 2 + 6 + 10 = 23).
* **JD**, the joint distribution: one categorical over the layer's tuple; ``prod_m |D_m|`` parameters
  (3 * 2 * 2 * 6 * 10 = 720). A tuple's index is row-major over the group's dimensions.

Coarse-to-fine search starts in FD and switches to JD (:meth:`ArchDistribution.switch_to_joint`): every joint
logit is set to the log of the product of the factorized marginals, so every architecture keeps its probability.
Both parameter sets exist from the start (the JD set trains only after the switch); the ``joint`` buffer says which
one is active, so a checkpoint holds the whole state. :func:`sample_count` is the adaptive sample count of
section 3.2, ``K = lambda * H(P(A | alpha))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sample_count(entropy: float, lam: float, k_min: int, k_max: int) -> int:
    """``K = clamp(ceil(lambda * H), K_min, K_max)`` (section 3.2, H in nats)."""
    return int(min(k_max, max(k_min, math.ceil(lam * entropy - 1e-9))))


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.detach().double(), dim=-1)
    return -(logp.exp() * logp).sum()


class ArchDistribution(nn.Module):
    """``sizes[d]`` options per dimension; ``groups`` the dimension indices of every layer (in dimension order)."""

    def __init__(self, sizes: list[int], groups: list[list[int]]) -> None:
        super().__init__()
        covered = sorted(d for g in groups for d in g)
        if covered != list(range(len(sizes))):
            raise ValueError(f"groups {groups} must cover the {len(sizes)} dimensions once each")
        self.sizes = list(sizes)
        self.groups = [list(g) for g in groups]
        self.fd = nn.ParameterList(nn.Parameter(torch.zeros(k)) for k in sizes)
        self.jd = nn.ParameterList(nn.Parameter(torch.zeros(math.prod(sizes[d] for d in g))) for g in groups)
        self.register_buffer("joint", torch.zeros((), dtype=torch.bool))

    # ---- parameters -----------------------------------------------------------------------------
    @property
    def is_joint(self) -> bool:
        return bool(self.joint)

    def active_parameters(self) -> list[nn.Parameter]:
        """The parameters that define P(A | alpha) now: JD's after the switch, FD's before."""
        return list(self.jd) if self.is_joint else list(self.fd)

    def num_parameters(self, joint: bool | None = None) -> int:
        """FD: sum of the options of every dimension; JD: sum over layers of the product of their options."""
        joint = self.is_joint if joint is None else joint
        return sum(p.numel() for p in (self.jd if joint else self.fd))

    # ---- the distribution -----------------------------------------------------------------------
    def _group_shape(self, g: list[int]) -> list[int]:
        return [self.sizes[d] for d in g]

    def group_log_probs(self) -> list[torch.Tensor]:
        """log P(A^l = tuple) per layer, flattened row-major (differentiable in the active parameters)."""
        if self.is_joint:
            return [torch.log_softmax(p, dim=-1) for p in self.jd]
        out = []
        for g in self.groups:
            total = torch.zeros(self._group_shape(g), dtype=self.fd[g[0]].dtype)
            for axis, d in enumerate(g):
                view = [1] * len(g)
                view[axis] = self.sizes[d]
                total = total + torch.log_softmax(self.fd[d], dim=-1).view(view)
            out.append(total.reshape(-1))
        return out

    def flat_index(self, g: list[int], choices: torch.Tensor) -> torch.Tensor:
        """Row-major index of the tuple of group ``g`` in every row of ``choices`` (``[K, D]`` option indices)."""
        idx = torch.zeros(choices.shape[0], dtype=torch.long)
        for d in g:
            idx = idx * self.sizes[d] + choices[:, d]
        return idx

    def log_prob(self, choices: torch.Tensor) -> torch.Tensor:
        """``log P(A_k | alpha)`` of every row of ``choices`` (``[K, D]`` long), differentiable."""
        if not self.is_joint:
            return sum(torch.log_softmax(p, dim=-1)[choices[:, d]] for d, p in enumerate(self.fd))  # type: ignore
        return sum(torch.log_softmax(p, dim=-1)[self.flat_index(g, choices)]  # type: ignore[return-value]
                   for g, p in zip(self.groups, self.jd, strict=True))

    def probability(self, choices: list[int]) -> float:
        with torch.no_grad():
            return float(self.log_prob(torch.tensor([choices])).double().exp())

    def entropy(self) -> float:
        """H(P(A | alpha)) in nats: the sum of the factorized entropies (FD) or of the layers' joint ones (JD)."""
        return float(sum(categorical_entropy(p) for p in self.active_parameters()))

    def marginals(self) -> list[torch.Tensor]:
        """P(A_d = option) per dimension (detached); under JD the joint table summed over the layer's other axes."""
        if not self.is_joint:
            return [torch.softmax(p.detach(), dim=-1) for p in self.fd]
        out: list[torch.Tensor | None] = [None] * len(self.sizes)
        for g, p in zip(self.groups, self.jd, strict=True):
            table = torch.softmax(p.detach(), dim=-1).view(self._group_shape(g))
            for axis, d in enumerate(g):
                out[d] = table.sum(dim=[a for a in range(len(g)) if a != axis]) if len(g) > 1 else table
        return out  # type: ignore[return-value]

    def most_probable(self) -> list[int]:
        """The most probable architecture: every layer's most probable tuple (layers are independent)."""
        out = [0] * len(self.sizes)
        with torch.no_grad():
            for g, logp in zip(self.groups, self.group_log_probs(), strict=True):
                self._decode(g, int(torch.argmax(logp)), out)
        return out

    def _decode(self, g: list[int], flat: int, out: list[int]) -> None:
        for d in reversed(g):
            out[d] = flat % self.sizes[d]
            flat //= self.sizes[d]

    def sample(self, n: int, generator: torch.Generator) -> list[list[int]]:
        """``n`` architectures drawn from P(A | alpha) with ``generator`` (per dimension under FD, per layer under JD,
        in a fixed order so that a keyed generator gives the same draws everywhere)."""
        with torch.no_grad():
            if not self.is_joint:
                cols = [torch.multinomial(torch.softmax(p.detach().double(), -1), n, replacement=True,
                                          generator=generator) for p in self.fd]
                return torch.stack(cols, dim=1).tolist()
            out = [[0] * len(self.sizes) for _ in range(n)]
            for g, p in zip(self.groups, self.jd, strict=True):
                flat = torch.multinomial(torch.softmax(p.detach().double(), -1), n, replacement=True,
                                         generator=generator).tolist()
                for row, f in zip(out, flat, strict=True):
                    self._decode(g, int(f), row)
            return out

    # ---- coarse to fine -------------------------------------------------------------------------
    @torch.no_grad()
    def switch_to_joint(self) -> None:
        """FD -> JD (section 3.3): the joint logits become the log of the product of the factorized marginals, so
        the distribution is unchanged; from now on the JD parameters are the active ones."""
        if self.is_joint:
            return
        for p, logp in zip(self.jd, self.group_log_probs(), strict=True):
            p.copy_(logp.detach())
        self.joint.fill_(True)
