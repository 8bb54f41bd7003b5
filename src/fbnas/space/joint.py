"""A joint space: several spaces side by side under name prefixes (``arch.s1.b0``, ``recipe.lr``).

FBNetV3 searches an architecture and its training recipe together; the joint space is one space of named
dimensions over both, so sampling, Sobol points, encodings and mutations treat them alike. At most one part
describes an architecture; every part may contribute recipe fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fbnas.errors import SpecError
from fbnas.space.base import Built, CostTerm, DimSpace, Sample
from fbnas.space.dims import Dim


@dataclass
class JointSpace(DimSpace):
    parts: dict[str, DimSpace]
    name: str = "joint"

    def __post_init__(self) -> None:
        bad = [p for p in self.parts if not p or "." in p]
        if bad or not self.parts:
            raise SpecError(f"space {self.name}: part prefixes must be non-empty names without dots, got {bad}")
        self.check_dim_names()

    @property
    def dims(self) -> list[Dim]:  # type: ignore[override]
        return [replace(d, name=f"{p}.{d.name}", group=f"{p}.{d.group}",
                        **({"encode_per": f"{p}.{d.encode_per}"} if getattr(d, "encode_per", "") else {}))
                for p, space in self.parts.items() for d in space.dims]

    def split(self, sample: Sample) -> dict[str, Sample]:
        """The part samples of a joint sample (prefixes removed)."""
        s = self.validate(sample)
        return {p: {d.name: s[f"{p}.{d.name}"] for d in space.dims} for p, space in self.parts.items()}

    def join(self, parts: dict[str, Sample]) -> Sample:
        return self.validate({f"{p}.{k}": v for p, s in parts.items() for k, v in s.items()})

    def build(self, sample: Sample) -> Built:
        arch, recipe = None, None
        for p, part_sample in self.split(sample).items():
            built = self.parts[p].build(part_sample)
            if built.arch is not None:
                if arch is not None:
                    raise SpecError(f"space {self.name}: more than one part describes an architecture")
                arch = built.arch
            if built.recipe is not None:
                recipe = {**(recipe or {}), **built.recipe}
        return Built(arch=arch, recipe=recipe)

    def arch_part(self) -> tuple[str, DimSpace]:
        found = [(p, s) for p, s in self.parts.items() if _describes_arch(s)]
        if len(found) != 1:
            raise SpecError(f"space {self.name}: expected one architecture part, found {len(found)}")
        return found[0]

    def term_dims(self) -> list[tuple[str, ...]]:
        prefix, part = self.arch_part()
        return [tuple(f"{prefix}.{d}" for d in dims) for dims in part.term_dims()]

    def cost_terms(self, num_classes: int = 1000) -> list[CostTerm]:
        prefix, part = self.arch_part()
        return [CostTerm(tuple(f"{prefix}.{d}" for d in t.dims), t.blocks) for t in part.cost_terms(num_classes)]


def _describes_arch(space: Any) -> bool:
    try:
        space.term_dims()
    except NotImplementedError:
        return False
    return True
