"""The space model: a space is a list of named dimensions and a ``build`` from a sample to what it describes.

:class:`Space` is the protocol every space implements (layer-wise FBNetV1, masking FBNetV2, the training
recipe, their joint compositions); :class:`DimSpace` implements everything that follows from the dimensions
alone: validating a sample, mapping the unit cube to samples (random and Sobol sampling share it), encoding
samples for predictors, and the walk that tells which block each option of each dimension puts where
(:meth:`DimSpace.cost_terms`), which both cost models (analytic counts, latency tables) consume.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fbnas.errors import SpecError
from fbnas.space.dims import Choice, Dim

if TYPE_CHECKING:
    from fbnas.arch.spec import ArchSpec
    from fbnas.cost.placement import Placed

Sample = dict[str, Any]


@dataclass(frozen=True)
class Built:
    """What a sample describes: an architecture, a training recipe (as a dict of Recipe fields), or both."""

    arch: ArchSpec | None = None
    recipe: dict[str, Any] | None = None


@dataclass(frozen=True)
class CostTerm:
    """One position of the network and the block each combination of ``dims``' options puts there.

    ``blocks[(i, j, ...)]`` is the block when ``dims[0]`` takes option ``i``, ``dims[1]`` option ``j``, ...;
    a term with no dims is a fixed block. A network's cost is the sum over terms of its combination's block.
    """

    dims: tuple[str, ...]
    blocks: dict[tuple[int, ...], Placed]


@runtime_checkable
class Space(Protocol):
    name: str

    @property
    def dims(self) -> list[Dim]: ...

    def build(self, sample: Sample) -> Built: ...

    def cost_terms(self, num_classes: int) -> list[CostTerm]: ...

    def blocks_of(self, dim: str, num_classes: int = 1000) -> list[Placed] | None: ...


class DimSpace:
    """Sample handling from the dimensions; subclasses provide ``name``, ``dims`` and :meth:`build`."""

    name: str
    dims: list[Dim]

    def check_dim_names(self) -> None:
        names = [d.name for d in self.dims]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpecError(f"space {self.name}: dimension names must be unique, repeated: {', '.join(dup)}")

    # ---- dimensions ------------------------------------------------------------------------------
    @property
    def dim_names(self) -> list[str]:
        return [d.name for d in self.dims]

    def dim(self, name: str) -> Dim:
        for d in self.dims:
            if d.name == name:
                return d
        raise SpecError(f"space {self.name}: no dimension {name!r}")

    def num_choices(self) -> list[int]:
        """Options per dimension (all dimensions must be choices)."""
        return [self._choice(d).size for d in self.dims]

    def size(self) -> float:
        return float(math.prod(self.num_choices()))

    def _choice(self, d: Dim) -> Choice:
        if not isinstance(d, Choice):
            raise SpecError(f"space {self.name}: dimension {d.name!r} is a range, not a choice")
        return d

    def groups(self) -> dict[str, list[str]]:
        """Group name -> its dimensions, in order (the variables of one layer share a group)."""
        out: dict[str, list[str]] = {}
        for d in self.dims:
            out.setdefault(d.group, []).append(d.name)
        return out

    # ---- samples ---------------------------------------------------------------------------------
    def validate(self, sample: Any, source: str = "sample") -> Sample:
        """``sample`` with every dimension present and valid (values normalised), in dimension order."""
        if not isinstance(sample, dict):
            raise SpecError(f"{source}: a sample of space {self.name} must be a mapping of dimension names")
        unknown = sorted(set(sample) - set(self.dim_names))
        if unknown:
            raise SpecError(f"{source}: unknown dimension(s) {unknown} of space {self.name}; "
                            f"valid: {', '.join(self.dim_names)}")
        missing = [n for n in self.dim_names if n not in sample]
        if missing:
            raise SpecError(f"{source}: missing dimension(s) {missing} of space {self.name}")
        try:
            return {d.name: d.validate(sample[d.name]) for d in self.dims}
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None

    def from_unit(self, u: Sequence[float]) -> Sample:
        """The sample at a point of the unit cube (one coordinate per dimension)."""
        if len(u) != len(self.dims):
            raise SpecError(f"space {self.name}: expected {len(self.dims)} coordinates, got {len(u)}")
        return {d.name: d.from_unit(float(x)) for d, x in zip(self.dims, u, strict=True)}

    def to_unit(self, sample: Sample) -> list[float]:
        s = self.validate(sample)
        return [d.to_unit(s[d.name]) for d in self.dims]

    def sample(self, seed: int, step: int = 0, stream: int = 2) -> Sample:
        """A uniformly random sample keyed by (seed, step, stream)."""
        from fbnas.seeding import numpy_rng, step_seed

        return self.from_unit(numpy_rng(step_seed(seed, step, stream)).random(len(self.dims)).tolist())

    def sobol(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` scrambled Sobol points mapped to samples (quasi-Monte-Carlo, ``scipy.stats.qmc``)."""
        import warnings

        from scipy.stats import qmc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n not a power of 2: balance warning
            points = qmc.Sobol(d=len(self.dims), scramble=True, seed=seed).random(n)
        return [self.from_unit(p.tolist()) for p in points]

    def _encode_parent(self, d: Dim) -> Choice | None:
        """The choice a range is encoded per (``Range.encode_per``), or None."""
        name = getattr(d, "encode_per", "")
        if not name:
            return None
        parent = next((p for p in self.dims if p.name == name), None)
        if not isinstance(parent, Choice):
            raise SpecError(f"space {self.name}: dimension {d.name!r}: encode_per {name!r} is not a choice of this "
                            "space")
        return parent

    @property
    def encoding_size(self) -> int:
        total = 0
        for d in self.dims:
            parent = self._encode_parent(d)
            total += d.encoding_size * (parent.size if parent else 1)
        return total

    def encode(self, sample: Sample) -> list[float]:
        """Predictor input: one-hot per choice, the scaled position per range, in dimension order; a range with
        ``encode_per`` fills the slot of its choice's option and leaves the others at 0."""
        s = self.validate(sample)
        out: list[float] = []
        for d in self.dims:
            x = d.encode(s[d.name])
            parent = self._encode_parent(d)
            if parent is None:
                out += x
                continue
            k = parent.index(s[parent.name])
            for i in range(parent.size):
                out += x if i == k else [0.0] * len(x)
        return out

    def indices(self, sample: Sample) -> list[int]:
        """Option index per dimension (choice dimensions only), as strategies index their parameters."""
        s = self.validate(sample)
        return [self._choice(d).index(s[d.name]) for d in self.dims]

    def from_indices(self, indices: Sequence[int]) -> Sample:
        if len(indices) != len(self.dims):
            raise SpecError(f"space {self.name}: expected {len(self.dims)} choices, got {len(indices)}")
        out = {}
        for d, i in zip(self.dims, indices, strict=True):
            c = self._choice(d)
            if not 0 <= int(i) < c.size:
                raise SpecError(f"space {self.name}: {d.name} choice {int(i)} out of range 0..{c.size - 1}")
            out[d.name] = c.values[int(i)]
        return out

    def labels(self, sample: Sample) -> list[str]:
        """``name=label`` of every dimension (choices show their label)."""
        s = self.validate(sample)
        return [f"{d.name}={d.labels[d.index(s[d.name])]}" if isinstance(d, Choice) else f"{d.name}={s[d.name]:g}"
                for d in self.dims]

    # ---- building --------------------------------------------------------------------------------
    def build(self, sample: Sample) -> Built:
        raise NotImplementedError

    # ---- the cost walk ---------------------------------------------------------------------------
    def term_dims(self) -> list[tuple[str, ...]]:
        """For every placed block of a built network (blocks, then the classifier): the dims it depends on."""
        raise NotImplementedError(f"space {self.name} describes no architecture")

    def default_sample(self) -> Sample:
        return {d.name: d.values[0] if isinstance(d, Choice) else d.from_unit(0.5) for d in self.dims}

    def place_sample(self, sample: Sample, num_classes: int) -> list[Placed]:
        from fbnas.cost.placement import place

        arch = self.build(sample).arch
        if arch is None:
            raise SpecError(f"space {self.name} describes no architecture")
        return place(arch, num_classes)

    def cost_terms(self, num_classes: int = 1000) -> list[CostTerm]:
        """For every position, the block each combination of its dims' options puts there."""
        cache = self.__dict__.setdefault("_cost_terms", {})
        if num_classes in cache:
            return cache[num_classes]
        per_pos = self.term_dims()
        base = self.default_sample()
        placed: dict[tuple, list[Placed]] = {}
        terms = []
        for pos, dims in enumerate(per_pos):
            choices = [self._choice(self.dim(n)) for n in dims]
            table = {}
            for combo in itertools.product(*(range(c.size) for c in choices)):
                sample = {**base, **{c.name: c.values[i] for c, i in zip(choices, combo, strict=True)}}
                key = tuple(sample[n] for n in self.dim_names)
                if key not in placed:
                    placed[key] = self.place_sample(sample, num_classes)
                    if len(placed[key]) != len(per_pos):
                        raise SpecError(f"space {self.name}: a network of {len(placed[key])} blocks, "
                                        f"{len(per_pos)} expected")
                table[combo] = placed[key][pos]
            terms.append(CostTerm(tuple(dims), table))
        cache[num_classes] = terms
        return terms

    def blocks_of(self, dim: str, num_classes: int = 1000) -> list[Placed] | None:
        """The block behind each option of ``dim`` where its options are blocks (a term of that dim alone)."""
        self.dim(dim)
        for term in self.cost_terms(num_classes):
            if term.dims == (dim,):
                return [term.blocks[(i,)] for i in range(len(term.blocks))]
        return None
