"""A layer-wise search space: fixed stages plus searchable layers, each a list of candidate blocks.

Spaces are YAML data (``defs/*.yaml`` or a user file). A choice vector (one candidate index per
searchable layer) maps to an :class:`ArchSpec`, so everything downstream (builder, cost counters,
latency tables, trainer, exporter) works on search results unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fbnas.arch.spec import ArchSpec, Block, BlockDef
from fbnas.errors import SpecError


@dataclass(frozen=True)
class Candidate:
    name: str
    op: str
    kwargs: dict[str, Any]


@dataclass
class SearchLayer:
    """One searchable block position: its channels/stride and the candidates it chooses among."""

    stage: int
    out_channels: int
    stride: int
    candidates: list[Candidate]


@dataclass
class SearchSpace:
    name: str
    input_size: int
    in_channels: int
    basic_args: dict[str, Any]
    head: dict[str, Any]
    # each stage: ("fixed", [BlockDef...]) or ("search", [SearchLayer...])
    stages: list[tuple[str, list]] = field(default_factory=list)

    @property
    def layers(self) -> list[SearchLayer]:
        return [layer for kind, items in self.stages if kind == "search" for layer in items]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def num_choices(self) -> list[int]:
        return [len(layer.candidates) for layer in self.layers]

    def size(self) -> float:
        return float(math.prod(self.num_choices()))

    def to_spec(self, choices: list[int] | np.ndarray, name: str | None = None) -> ArchSpec:
        """The architecture that picks candidate ``choices[l]`` in searchable layer ``l``."""
        choices = [int(c) for c in choices]
        if len(choices) != self.num_layers:
            raise SpecError(f"space {self.name}: expected {self.num_layers} choices, got {len(choices)}")
        stages: list[list[BlockDef]] = []
        li = 0
        for kind, items in self.stages:
            if kind == "fixed":
                stages.append([copy.deepcopy(b) for b in items])
                continue
            stage = []
            for layer in items:
                ci = choices[li]
                if not 0 <= ci < len(layer.candidates):
                    raise SpecError(f"space {self.name}: layer {li} choice {ci} out of range "
                                    f"0..{len(layer.candidates) - 1}")
                cand = layer.candidates[ci]
                stage.append(BlockDef(cand.op, layer.out_channels, layer.stride, 1, dict(cand.kwargs)))
                li += 1
            stages.append(stage)
        return ArchSpec(stages=stages, name=name or f"{self.name}_child", input_size=self.input_size,
                        in_channels=self.in_channels, basic_args=dict(self.basic_args), head=dict(self.head))

    def choice_names(self, choices: list[int]) -> list[str]:
        return [layer.candidates[int(c)].name for layer, c in zip(self.layers, choices, strict=True)]

    def sample(self, rng: np.random.Generator) -> list[int]:
        return [int(rng.integers(n)) for n in self.num_choices()]

    def candidate_blocks(self) -> list[list[Block]]:
        """For every searchable layer, the concrete Block of each candidate (channels/stride resolved).

        Candidate blocks of one layer share position, input channels and input size, which is what
        supernets and latency tables need.
        """
        per_layer: list[list[Block]] = [[] for _ in range(self.num_layers)]
        n_cand = max(self.num_choices())
        for ci in range(n_cand):
            choices = [min(ci, n - 1) for n in self.num_choices()]
            blocks = self.to_spec(choices).expand()
            li = 0
            for b in blocks:
                if self._is_search_position(b.position):
                    if ci < self.num_choices()[li]:
                        per_layer[li].append(b)
                    li += 1
        return per_layer

    def fixed_positions(self) -> list[int]:
        return [p for p in range(self._num_positions()) if not self._is_search_position(p)]

    def _num_positions(self) -> int:
        return sum(len(items) if kind == "search" else sum(b.repeats for b in items)
                   for kind, items in self.stages)

    def _is_search_position(self, pos: int) -> bool:
        p = 0
        for kind, items in self.stages:
            n = len(items) if kind == "search" else sum(b.repeats for b in items)
            if pos < p + n:
                return kind == "search"
            p += n
        return False


def space_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fbnas.space").joinpath("defs").iterdir()
                  if p.name.endswith(".yaml"))


def _auto_strides(strides: list[int], input_size: int, reference_size: int) -> list[int]:
    """Drop the earliest stride-2s so a small input keeps a sensible final feature map (>= ~3.5 px)."""
    keep = max(0, min(sum(s == 2 for s in strides), int(math.floor(math.log2(input_size / 3.5)))))
    if input_size >= reference_size:
        return strides
    drop = sum(s == 2 for s in strides) - keep
    out = list(strides)
    for i, s in enumerate(out):
        if drop <= 0:
            break
        if s == 2:
            out[i] = 1
            drop -= 1
    return out


def load_space(name_or_path: str | Path, input_size: int | None = None, in_channels: int | None = None,
               width_multiplier: float | None = None, strides: list[int] | None = None,
               num_classes: int | None = None) -> SearchSpace:
    """Load a space by name (``fbnet_v1``) or YAML path, scaled to ``input_size`` / width / strides.

    ``strides`` gives the stride of every stage (fixed and searchable) in order; by default, an input
    smaller than the space's own size drops the earliest stride-2 stages automatically.
    """
    import yaml

    p = Path(str(name_or_path))
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SpecError(f"{p}: file not found")
        source = str(p)
        text = p.read_text(encoding="utf-8")
    else:
        names = space_names()
        if str(name_or_path) not in names:
            raise SpecError(f"unknown search space {name_or_path!r}; valid: {', '.join(names)} or a YAML file")
        source = f"space:{name_or_path}"
        text = resources.files("fbnas.space").joinpath("defs", f"{name_or_path}.yaml").read_text("utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{source}: not valid YAML: {str(e).splitlines()[0]}") from None
    return space_from_dict(data, source, input_size, in_channels, width_multiplier, strides)


def space_from_dict(data: Any, source: str = "space", input_size: int | None = None,
                    in_channels: int | None = None, width_multiplier: float | None = None,
                    strides: list[int] | None = None) -> SearchSpace:
    if not isinstance(data, dict) or "stages" not in data:
        raise SpecError(f"{source}: a search space must be a mapping with 'stages'")
    cand_sets: dict[str, list[Candidate]] = {}
    for set_name, entries in (data.get("candidates") or {}).items():
        if not isinstance(entries, dict) or not entries:
            raise SpecError(f"{source}: candidates.{set_name} must map candidate names to [op, {{kwargs}}]")
        cand_sets[set_name] = []
        for cname, entry in entries.items():
            if not isinstance(entry, list) or not entry or not isinstance(entry[0], str):
                raise SpecError(f"{source}: candidates.{set_name}.{cname} must be [op, {{kwargs}}]")
            cand_sets[set_name].append(Candidate(cname, entry[0], dict(entry[1]) if len(entry) > 1 else {}))
    raw_stages = data["stages"]
    base_size = int(data.get("input_size", 224))
    size = int(input_size or base_size)
    st = [int((s.get("fixed") or [None, None, 1])[2]) if "fixed" in s else int(s.get("s", 1)) for s in raw_stages]
    if strides is not None:
        if len(strides) != len(raw_stages):
            raise SpecError(f"{source}: strides needs {len(raw_stages)} entries (one per stage), got {len(strides)}")
        st = [int(s) for s in strides]
    else:
        st = _auto_strides(st, size, base_size)
    basic = dict(data.get("basic_args") or {})
    if width_multiplier is not None:
        basic["width_multiplier"] = float(width_multiplier)
    space = SearchSpace(name=str(data.get("name", Path(source).stem)), input_size=size,
                        in_channels=int(in_channels or data.get("in_channels", 3)), basic_args=basic,
                        head=dict(data.get("head") or {"dropout": 0.2}))
    for si, s in enumerate(raw_stages):
        if not isinstance(s, dict) or ("fixed" in s) == ("search" in s):
            raise SpecError(f"{source}: stage {si} must have exactly one of 'fixed' or 'search'")
        if "fixed" in s:
            rows = s["fixed"] if isinstance(s["fixed"][0], list) else [s["fixed"]]
            defs = [BlockDef.from_any(r, f"{source}: stage {si}") for r in rows]
            defs[0].stride = st[si]
            space.stages.append(("fixed", defs))
        else:
            cs = s["search"]
            if cs not in cand_sets:
                raise SpecError(f"{source}: stage {si}: unknown candidate set {cs!r}; "
                                f"valid: {sorted(cand_sets)}")
            n = int(s.get("n", 1))
            layers = [SearchLayer(si, int(s["c"]), st[si] if r == 0 else 1, cand_sets[cs]) for r in range(n)]
            space.stages.append(("search", layers))
    space.to_spec([0] * space.num_layers).validate(source)  # every candidate op must resolve
    for li, layer in enumerate(space.layers):
        for c in layer.candidates:
            from fbnas.nn.ops import resolve_op

            try:
                resolve_op(c.op, c.kwargs, basic)
            except SpecError as e:
                raise SpecError(f"{source}: layer {li} candidate {c.name}: {e}") from None
    return space
