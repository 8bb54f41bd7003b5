"""The layer-wise space of FBNetV1 (seed 000, Table 2): fixed stages plus searchable layers, each choosing one
of a list of candidate blocks.

Spaces are YAML data (``defs/*.yaml`` or a user file). Each searchable layer is a :class:`Choice` dimension
named ``s{stage}.b{index}`` whose values are the candidate names; a sample such as ``{"s1.b0": "k3_e6", ...}``
builds an :class:`ArchSpec`, so everything downstream (builder, cost counters, latency tables, trainer,
exporter) works on search results unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbnas.arch.spec import BASIC_ARGS_FIELDS, HEAD_FIELDS, ArchSpec, BlockDef, closed_mapping
from fbnas.errors import SpecError
from fbnas.space.base import Built, CostTerm, DimSpace, Sample
from fbnas.space.dims import Choice, Dim

if TYPE_CHECKING:
    from fbnas.cost.placement import Placed


@dataclass(frozen=True)
class Candidate:
    name: str
    op: str
    kwargs: dict[str, Any]


@dataclass
class SearchLayer:
    """One searchable block position: its dimension name, channels, stride and candidates."""

    stage: int
    out_channels: int
    stride: int
    candidates: list[Candidate]
    name: str = ""


@dataclass
class LayerwiseSpace(DimSpace):
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
    def dims(self) -> list[Dim]:  # type: ignore[override]
        return [Choice(layer.name, tuple(c.name for c in layer.candidates)) for layer in self.layers]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def to_spec(self, choices: list[int], name: str | None = None) -> ArchSpec:
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

    def build(self, sample: Sample, name: str | None = None) -> Built:
        return Built(arch=self.to_spec(self.indices(sample), name))

    def choice_names(self, choices: list[int]) -> list[str]:
        return [layer.candidates[int(c)].name for layer, c in zip(self.layers, choices, strict=True)]

    # ---- the cost walk ---------------------------------------------------------------------------
    def term_dims(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for kind, items in self.stages:
            if kind == "fixed":
                out += [()] * sum(b.repeats for b in items)
            else:
                out += [(layer.name,) for layer in items]
        return out + [()]  # the classifier

    def cost_terms(self, num_classes: int = 1000) -> list[CostTerm]:
        """As :meth:`DimSpace.cost_terms`; a layer's block does not depend on the other layers' choices, so one
        network per candidate index gives every layer's block for that index."""
        cache = self.__dict__.setdefault("_cost_terms", {})
        if num_classes in cache:
            return cache[num_classes]
        from fbnas.cost.placement import place

        n_choices = self.num_choices()
        per_pos = self.term_dims()
        tables: list[dict[tuple[int, ...], Placed]] = [{} for _ in per_pos]
        for ci in range(max(n_choices)):
            placed = place(self.to_spec([min(ci, n - 1) for n in n_choices]), num_classes)
            li = 0
            for pos, dims in enumerate(per_pos):
                if dims:
                    if ci < n_choices[li]:
                        tables[pos][(ci,)] = placed[pos]
                    li += 1
                elif ci == 0:
                    tables[pos][()] = placed[pos]
        cache[num_classes] = [CostTerm(dims, t) for dims, t in zip(per_pos, tables, strict=True)]
        return cache[num_classes]


# ---- loading --------------------------------------------------------------------------------------
def _first_stride(stage: dict) -> int:
    rows = stage["fixed"]
    first = rows[0] if isinstance(rows[0], (list, dict)) else rows
    return int(BlockDef.from_any(first, "stage").stride)


_SPACE_FIELDS = {"name", "input_size", "in_channels", "basic_args", "head", "candidates", "stages", "kind"}


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


def _int(value: Any, where: str, low: int, high: int) -> int:
    """An integer field of a space file in ``low..high`` (not a bool, not a float), else one line."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SpecError(f"{where}: must be an integer in {low}..{high}, got {value!r}")
    return value


def layerwise_from_dict(data: Any, source: str = "space", input_size: int | None = None,
                        in_channels: int | None = None, width_multiplier: float | None = None,
                        strides: list[int] | None = None) -> LayerwiseSpace:
    """A layer-wise space from its YAML mapping, scaled to ``input_size`` / width / strides."""
    from fbnas.channels import MAX_CHANNELS, MAX_INPUT_SIZE, MAX_REPEATS
    from fbnas.nn.ops import resolve_op

    if not isinstance(data, dict) or "stages" not in data:
        raise SpecError(f"{source}: a search space must be a mapping with 'stages'")
    unknown = sorted(set(data) - _SPACE_FIELDS)
    if unknown:
        raise SpecError(f"{source}: unknown field(s) {unknown}; valid: {', '.join(sorted(_SPACE_FIELDS))}")
    closed_mapping(data.get("basic_args"), BASIC_ARGS_FIELDS, f"{source}: basic_args")
    closed_mapping(data.get("head"), HEAD_FIELDS, f"{source}: head")
    if data.get("candidates") is not None and not isinstance(data["candidates"], dict):
        raise SpecError(f"{source}: candidates: must be a mapping, got {type(data['candidates']).__name__}")
    if width_multiplier is not None and not (isinstance(width_multiplier, (int, float))
                                             and math.isfinite(width_multiplier) and width_multiplier > 0):
        raise SpecError(f"{source}: width_multiplier: must be a finite number > 0, got {width_multiplier!r}")
    cand_sets: dict[str, list[Candidate]] = {}
    for set_name, entries in (data.get("candidates") or {}).items():
        if not isinstance(entries, dict) or not entries:
            raise SpecError(f"{source}: candidates.{set_name} must map candidate names to [op, {{kwargs}}]")
        cand_sets[set_name] = []
        for cname, entry in entries.items():
            if not isinstance(entry, list) or not entry or not isinstance(entry[0], str) or len(entry) > 2 or (
                    len(entry) == 2 and not isinstance(entry[1], dict)):
                raise SpecError(f"{source}: candidates.{set_name}.{cname} must be [op, {{kwargs}}]")
            cand_sets[set_name].append(Candidate(str(cname), entry[0], dict(entry[1]) if len(entry) > 1 else {}))
    raw_stages = data["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        raise SpecError(f"{source}: stages must be a non-empty list")
    for si, s in enumerate(raw_stages):
        if not isinstance(s, dict) or ("fixed" in s) == ("search" in s):
            raise SpecError(f"{source}: stage {si} must have exactly one of 'fixed' or 'search'")
        allowed = {"fixed"} if "fixed" in s else {"search", "c", "s", "n"}
        extra = sorted(set(s) - allowed)
        if extra:
            raise SpecError(f"{source}: stage {si}: unknown field(s) {extra}; valid: {', '.join(sorted(allowed))}")
        if "fixed" in s:
            rows = s["fixed"]
            if isinstance(rows, dict):
                rows = s["fixed"] = [rows]
            if not isinstance(rows, list) or not rows or (isinstance(rows[0], (list, dict)) and not all(
                    isinstance(r, (list, dict)) for r in rows)):
                raise SpecError(f"{source}: stage {si}: fixed must be a block row [op, c, s, n, {{kwargs}}] or a "
                                "list of them")
            first = BlockDef.from_any(rows[0] if isinstance(rows[0], (list, dict)) else rows, f"{source}: stage {si}")
            _int(first.stride, f"{source}: stage {si}: stride", 1, 2)
        else:
            if "c" not in s:
                raise SpecError(f"{source}: stage {si}: a search stage needs 'c' (its channels)")
            _int(s["c"], f"{source}: stage {si}: c", 1, MAX_CHANNELS)
            _int(s.get("s", 1), f"{source}: stage {si}: s", 1, 2)
            _int(s.get("n", 1), f"{source}: stage {si}: n", 1, MAX_REPEATS)
            if not isinstance(s["search"], str):
                raise SpecError(f"{source}: stage {si}: search must name a candidate set, got {s['search']!r}")
    base_size = _int(data.get("input_size", 224), f"{source}: input_size", 8, MAX_INPUT_SIZE)
    size = base_size if input_size is None else _int(input_size, f"{source}: input_size", 8, MAX_INPUT_SIZE)
    if in_channels is not None:
        _int(in_channels, f"{source}: in_channels", 1, MAX_CHANNELS)
    _int(data.get("in_channels", 3), f"{source}: in_channels", 1, MAX_CHANNELS)
    st = [_first_stride(s) if "fixed" in s else int(s.get("s", 1)) for s in raw_stages]
    if strides is not None:
        if not isinstance(strides, list) or len(strides) != len(raw_stages):
            n = len(strides) if isinstance(strides, list) else strides
            raise SpecError(f"{source}: strides needs {len(raw_stages)} entries (one per stage), got {n!r}")
        st = [_int(v, f"{source}: strides[{i}]", 1, 2) for i, v in enumerate(strides)]
    else:
        st = _auto_strides(st, size, base_size)
    basic = dict(data.get("basic_args") or {})
    if width_multiplier is not None:
        basic["width_multiplier"] = float(width_multiplier)
    space = LayerwiseSpace(name=str(data.get("name", Path(source).stem)), input_size=size,
                           in_channels=int(in_channels or data.get("in_channels", 3)), basic_args=basic,
                           head=dict(data.get("head") or {"dropout": 0.2}))
    for si, s in enumerate(raw_stages):
        if "fixed" in s:
            rows = s["fixed"] if isinstance(s["fixed"][0], (list, dict)) else [s["fixed"]]
            defs = [BlockDef.from_any(r, f"{source}: stage {si}") for r in rows]
            defs[0].stride = st[si]
            space.stages.append(("fixed", defs))
        else:
            cs = s["search"]
            if cs not in cand_sets:
                raise SpecError(f"{source}: stage {si}: unknown candidate set {cs!r}; "
                                f"valid: {sorted(cand_sets)}")
            n = int(s.get("n", 1))
            layers = [SearchLayer(si, int(s["c"]), st[si] if r == 0 else 1, cand_sets[cs], f"s{si}.b{r}")
                      for r in range(n)]
            space.stages.append(("search", layers))
    if not space.layers:
        raise SpecError(f"{source}: a search space needs at least one 'search' stage")
    space.check_dim_names()
    space.to_spec([0] * space.num_layers).validate(source)  # every candidate op must resolve
    for li, layer in enumerate(space.layers):
        for c in layer.candidates:
            try:
                resolve_op(c.op, c.kwargs, basic)
            except SpecError as e:
                raise SpecError(f"{source}: layer {li} candidate {c.name}: {e}") from None
    return space
