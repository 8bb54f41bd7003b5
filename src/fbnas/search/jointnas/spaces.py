"""JointNAS's search space and its constraints: the architecture space (a stage-wise FBNetV3 space) and the
recipe space side by side (seed 000, "FBNet V3": max acc(A, h) subject to g_i(A) <= C_i), and the exact
costs g_i of a candidate's architecture: analytic MACs and params (``fbnas.cost.counting.count``) and the
latency table's sum (``LatencyTable.predict``), each an upper bound.
"""

from __future__ import annotations

import json
from typing import Any

from fbnas.errors import FbnasError
from fbnas.space import JointSpace, Sample, load_space, space_from_dict
from fbnas.space.base import DimSpace
from fbnas.space.dims import Choice, Dim, Range

ARCH, RECIPE = "arch", "recipe"
CAP_UNITS = {"latency_ms": "ms", "macs": "MMACs", "params": "M params"}


def recipe_dims(fields: list[str], ranges: dict[str, Any]) -> dict[str, Dim]:
    """Dimensions replacing the default ones of ``fields`` (``jointnas.space.ranges``)."""
    out: dict[str, Dim] = {}
    for name, r in ranges.items():
        if name not in fields:
            raise FbnasError(f"jointnas.space.ranges.{name}: not a searched field (jointnas.space.recipe: "
                             f"{', '.join(fields)})")
        if r.values is not None:
            out[name] = Choice(name, tuple(r.values), tuple(r.labels or ()))
        else:
            if r.encode_per is not None and r.encode_per not in fields:
                raise FbnasError(f"jointnas.space.ranges.{name}.encode_per: {r.encode_per!r} is not a searched "
                                 f"field ({', '.join(fields)})")
            out[name] = Range(name, float(r.low), float(r.high), log=r.log, encode_per=r.encode_per or "")
    return out


def joint_space(section: Any, source: str = "config") -> JointSpace:
    """``{"arch": the architecture space, "recipe": the searched recipe fields}`` of a ``jointnas.space``."""
    from fbnas.train.recipe import RecipeError, recipe_space

    try:
        arch = (space_from_dict(section.arch, f"{source}: jointnas.space.arch") if isinstance(section.arch, dict)
                else load_space(section.arch))
    except FbnasError as e:
        if isinstance(section.arch, dict):
            raise
        raise FbnasError(f"{source}: jointnas.space.arch: {e}") from None
    if not _describes_arch(arch):
        raise FbnasError(f"{source}: jointnas.space.arch: {arch.name!r} describes no architecture")
    try:
        recipe = recipe_space(list(section.recipe), recipe_dims(list(section.recipe), dict(section.ranges)))
        recipe.encoding_size  # noqa: B018 - an encode_per that names a range fails here, not at the first fit
    except (RecipeError, FbnasError) as e:
        raise FbnasError(f"{source}: jointnas.space: {e}") from None
    return JointSpace({ARCH: arch, RECIPE: recipe}, name=f"{arch.name}+recipe")


def _describes_arch(space: DimSpace) -> bool:
    try:
        space.term_dims()
    except NotImplementedError:
        return False
    return True


def space_signature(space: JointSpace) -> list[list[Any]]:
    """What a predictor depends on: every dimension's name and options (reuse checks it)."""
    out = []
    for d in space.dims:
        if isinstance(d, Choice):
            out.append([d.name, "choice", list(d.values)])
        else:
            out.append([d.name, "range", d.low, d.high, d.log, d.integer])
    return json.loads(json.dumps(out))


def sample_key(sample: Sample) -> str:
    return json.dumps(sample, sort_keys=True)


class Constraints:
    """Exact costs of a joint sample's architecture and whether they meet every cap (``constraints``)."""

    def __init__(self, space: JointSpace, caps: dict[str, float], num_classes: int, lut: Any = None) -> None:
        bad = sorted(set(caps) - set(CAP_UNITS))
        if bad:
            raise FbnasError(f"constraints.{bad[0]}: unknown; valid: {', '.join(CAP_UNITS)}")
        if "latency_ms" in caps and lut is None:
            raise FbnasError("constraints.latency_ms: needs a latency table (lut.path)")
        self.space, self.caps, self.num_classes, self.lut = space, dict(caps), num_classes, lut
        self._cache: dict[str, dict[str, float | None]] = {}

    def arch_of(self, sample: Sample):
        return self.space.build(sample).arch

    def costs(self, sample: Sample) -> dict[str, float | None]:
        """MACs and params (millions), latency (ms, with a table) of the sample's architecture (cached)."""
        from fbnas.cost.counting import count

        part = self.space.split(sample)[ARCH]
        key = sample_key(part)
        if key not in self._cache:
            arch = self.space.parts[ARCH].build(part).arch
            report = count(arch, num_classes=self.num_classes)
            lat = None if self.lut is None else float(self.lut.predict(arch).total_ms)
            self._cache[key] = {"macs": report.macs / 1e6, "params": report.params / 1e6, "latency_ms": lat}
        return self._cache[key]

    def ok(self, sample: Sample) -> bool:
        c = self.costs(sample)
        return all(c[name] is not None and c[name] <= limit for name, limit in self.caps.items())

    def describe(self, sample: Sample) -> dict[str, dict[str, Any]]:
        c = self.costs(sample)
        return {name: {"limit": limit, "value": c[name], "unit": CAP_UNITS[name]} for name, limit in self.caps.items()}


def feasible_pool(space: JointSpace, constraints: Constraints, n: int, seed: int, max_rounds: int = 32
                  ) -> list[Sample]:
    """``n`` distinct scrambled-Sobol samples that meet every constraint, in Sobol order: rounds of ``2n``
    points (scramble seeds derived from the run's seed) until ``n`` are feasible."""
    from fbnas.seeding import derive_seed

    out: list[Sample] = []
    seen: set[str] = set()
    drawn = 0
    for r in range(max_rounds):
        for s in space.sobol(2 * n, seed=derive_seed(seed, "jointnas", "pool", r) % (2**32)):
            drawn += 1
            key = sample_key(s)
            if key in seen:
                continue
            seen.add(key)
            if constraints.ok(s):
                out.append(s)
                if len(out) == n:
                    return out
    if not out:
        caps = ", ".join(f"{k} <= {v:g}" for k, v in constraints.caps.items())
        raise FbnasError(f"constraints: none of {drawn} Sobol samples of {space.name} meets {caps}")
    return out
