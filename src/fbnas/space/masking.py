"""FBNetV2 DMaskingNAS search space as data: a macro-architecture with per-stage channel options, per-block
expansion options and input-resolution options (seed 000, "FBNet V2").

A space is a mapping (the ``space`` section of a dmasking config)::

    input_size: 28            # dataset image size = the largest resolution
    in_channels: 1
    resolutions: [28, 24, 20] # candidate input resolutions (subsamplings of the input)
    width_divisor: 4          # channel options and hidden channels are multiples of this
    act: relu                 # default activation
    stem: {c: [8, 12, 16], s: 2, k: 3, act: hswish}
    stages:                   # one row per stage; k/se/act may be one value or one per block
      - {c: [8, 12, 16], s: 1, n: 1, e: [1], k: 3, se: null, act: relu}
      - {c: [16, 20, 24], s: 2, n: 2, e: [1, 2, 3, 4, 6], k: [3, 5], se: hsigmoid}
    last: {c: 128, act: hswish}   # fixed 1x1 conv before the classifier
    dropout: 0.1

Channel options of a stage are shared by all its blocks (residual additions need equal widths). Expansion
options are ratios of the block's *largest* input width: the hidden-width options are
``make_divisible(e * max_cin)``; the child's ``e`` is then ``hidden / chosen_cin`` (fractional, as in the
released FBNetV2 models). Kernel, SE and activation are fixed per block (data, not searched).

Each searched quantity is a :class:`Choice` dimension: ``res``, ``stem.c``, ``s{i}.c`` (one per stage) and
``s{i}.b{j}.mid`` (one per block), in that order; a sample such as ``{"res": 24, "stem.c": 12, ...}`` builds
the child's :class:`ArchSpec`. The dimensions of a block (its hidden width) form the group ``s{i}.b{j}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fbnas.arch.spec import ArchSpec, BlockDef
from fbnas.channels import MAX_CHANNELS, MAX_EXPANSION, MAX_REPEATS, make_divisible
from fbnas.errors import FbnasError, key_name
from fbnas.space.base import Built, DimSpace, Sample
from fbnas.space.dims import Choice, Dim

KINDS = ("res", "channels", "expansion")


@dataclass(frozen=True)
class BlockPlan:
    """A searchable inverted-residual block: stage, stride, fixed micro-choices and hidden-width options."""

    stage: int
    index: int
    stride: int
    k: int
    se: str | None
    act: str
    in_group: int  # dimension index of the input width (stem or previous stage)
    out_group: int  # dimension index of the output width (this stage)
    e_group: int  # dimension index of the hidden width
    se_hidden: tuple[int, ...]  # SE bottleneck width per hidden option


@dataclass
class MaskingSpace(DimSpace):
    """Dimensions (``choices``, values increasing, with their ``kinds``) and the blocks they shape."""

    input_size: int
    in_channels: int
    resolutions: tuple[int, ...]  # decreasing; resolutions[0] == input_size
    width_divisor: int
    act: str
    stem_k: int
    stem_s: int
    stem_act: str
    last_c: int
    last_act: str
    dropout: float
    name: str = "masking"
    choices: list[Choice] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    blocks: list[BlockPlan] = field(default_factory=list)
    stage_strides: list[int] = field(default_factory=list)

    RES, STEM = 0, 1

    @property
    def dims(self) -> list[Dim]:  # type: ignore[override]
        return list(self.choices)

    def add_choice(self, name: str, kind: str, values: tuple[int, ...], group: str) -> int:
        self.choices.append(Choice(name, tuple(values), group=group))
        self.kinds.append(kind)
        return len(self.choices) - 1

    def max_choices(self) -> list[int]:
        return [len(g.values) - 1 for g in self.choices]

    def stage_group(self, stage: int) -> int:
        return 2 + stage

    def choice_names(self, choices: list[int]) -> list[str]:
        return [f"{g.name}={g.labels[int(c)]}" for g, c in zip(self.choices, choices, strict=True)]

    def build(self, sample: Sample, name: str = "dmasking_child") -> Built:
        return Built(arch=self.to_spec(self.indices(sample), name))

    def term_dims(self) -> list[tuple[str, ...]]:
        """stem: (res, stem.c); block: (res, input width, hidden width, output width); last conv: (res, last
        stage width); classifier: (res)."""
        names = [c.name for c in self.choices]
        res = names[self.RES]
        out: list[tuple[str, ...]] = [(res, names[self.STEM])]
        for b in self.blocks:
            out.append(tuple(dict.fromkeys((res, names[b.in_group], names[b.e_group], names[b.out_group]))))
        out.append((res, names[self.blocks[-1].out_group]))
        out.append((res,))
        return out

    def to_spec(self, choices: list[int], name: str = "dmasking_child") -> ArchSpec:
        """The child architecture of ``choices``: plain ops, no masks (``always_pw`` keeps every 1x1 expand)."""
        if len(choices) != len(self.choices):
            raise FbnasError(f"dmasking space: expected {len(self.choices)} choices, got {len(choices)}")
        val = [g.values[int(c)] for g, c in zip(self.choices, choices, strict=True)]
        stem_c = val[self.STEM]
        stages: list[list[BlockDef]] = [[BlockDef("conv", stem_c, self.stem_s, 1,
                                                  {"k": self.stem_k, "act": self.stem_act})]]
        for b in self.blocks:
            if b.index == 0:
                stages.append([])
            cin, mid = val[b.in_group], val[b.e_group]
            kw: dict[str, Any] = {"k": b.k, "e": round(mid / cin, 6), "act": b.act, "always_pw": True}
            if b.se:
                kw["se"] = b.se
            stages[-1].append(BlockDef("ir", val[b.out_group], b.stride, 1, kw))
        stages.append([BlockDef("conv", self.last_c, 1, 1, {"k": 1, "act": self.last_act})])
        spec = ArchSpec(stages=stages, name=name, input_size=int(val[self.RES]), in_channels=self.in_channels,
                        basic_args={"width_divisor": self.width_divisor, "width_multiplier": 1.0, "act": self.act},
                        head={"dropout": self.dropout})
        spec.validate(name)
        return spec


def _ints(v: Any, where: str, positive: bool = True) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise FbnasError(f"{where}: must be an integer or a non-empty list of integers, got {v!r}")
    if positive and min(v) < 1:
        raise FbnasError(f"{where}: values must be >= 1, got {v!r}")
    if max(v) > MAX_CHANNELS:
        raise FbnasError(f"{where}: values must be at most {MAX_CHANNELS}, got {max(v)}")
    return list(v)


def _per_block(v: Any, n: int, where: str) -> list[Any]:
    if isinstance(v, list):
        if len(v) != n:
            raise FbnasError(f"{where}: a list needs one entry per block ({n}), got {len(v)}")
        return list(v)
    return [v] * n


def _increasing(values: list[int], where: str) -> tuple[int, ...]:
    out = tuple(sorted(set(values)))
    if len(out) != len(values):
        raise FbnasError(f"{where}: options must be distinct, got {values!r}")
    return out


_FIELDS = {"name", "kind", "input_size", "in_channels", "resolutions", "width_divisor", "act", "stem", "stages", "last",
           "dropout"}


def _known(node: dict, valid: set[str], where: str, source: str) -> None:
    extra = sorted(str(k) for k in set(node) - valid)
    if extra:
        raise FbnasError(f"{source}: {where}.{key_name(extra[0])}: unknown field; valid: {', '.join(sorted(valid))}")


def parse_space(d: Any, source: str = "space") -> MaskingSpace:
    """Validate the ``space`` mapping; every error names ``source: space.FIELD``."""
    from fbnas.nn.layers import ACTIVATIONS

    def get(key: str, node: dict = d, where: str = "space") -> Any:
        if not isinstance(node, dict) or key not in node:
            raise FbnasError(f"{source}: {where}.{key}: missing")
        return node[key]

    def act(v: Any, where: str) -> str:
        if not isinstance(v, str) or v not in ACTIVATIONS:
            raise FbnasError(f"{source}: {where}: unknown activation {v!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
        return str(v)

    def kernel(v: Any, where: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1 or v % 2 == 0:
            raise FbnasError(f"{source}: {where}: kernel must be an odd positive integer, got {v!r}")
        return v

    def stride(v: Any, where: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v not in (1, 2):
            raise FbnasError(f"{source}: {where}: must be 1 or 2, got {v!r}")
        return v

    if not isinstance(d, dict):
        raise FbnasError(f"{source}: space: must be a mapping")
    _known(d, _FIELDS, "space", source)
    size = _ints(get("input_size"), f"{source}: space.input_size")[0]
    in_ch = _ints(get("in_channels"), f"{source}: space.in_channels")[0]
    wd = _ints(get("width_divisor"), f"{source}: space.width_divisor")[0]
    res = sorted(_increasing(_ints(get("resolutions"), f"{source}: space.resolutions"),
                             f"{source}: space.resolutions"), reverse=True)
    if res[0] != size or res[-1] < 8:
        raise FbnasError(f"{source}: space.resolutions: the largest must equal space.input_size ({size}) and the "
                         f"smallest be >= 8, got {res}")
    default_act = act(get("act"), "space.act")
    stem = get("stem")
    last = get("last")
    if not isinstance(stem, dict) or not isinstance(last, dict):
        raise FbnasError(f"{source}: space.stem / space.last: must be mappings")
    _known(stem, {"c", "s", "k", "act"}, "space.stem", source)
    _known(last, {"c", "act"}, "space.last", source)
    dropout = d.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise FbnasError(f"{source}: space.dropout: must be in [0, 1), got {dropout!r}")

    def channel_values(v: Any, where: str) -> tuple[int, ...]:
        vals = _increasing(_ints(v, f"{source}: {where}"), f"{source}: {where}")
        bad = [c for c in vals if c % wd]
        if bad:
            raise FbnasError(f"{source}: {where}: channel options must be multiples of width_divisor {wd}, "
                             f"got {bad[0]}")
        return vals

    sp = MaskingSpace(
        input_size=size, in_channels=in_ch, resolutions=tuple(res), width_divisor=wd, act=default_act,
        stem_k=kernel(stem.get("k", 3), "space.stem.k"), stem_s=stride(stem.get("s", 2), "space.stem.s"),
        stem_act=act(stem.get("act", default_act), "space.stem.act"),
        last_c=_ints(get("c", last, "space.last"), f"{source}: space.last.c")[0],
        last_act=act(last.get("act", default_act), "space.last.act"), dropout=float(dropout),
        name=str(d.get("name", "masking")))
    sp.add_choice("res", "res", tuple(sorted(res)), "res")
    sp.add_choice("stem.c", "channels", channel_values(get("c", stem, "space.stem"), "space.stem.c"), "stem")
    stages = get("stages")
    if not isinstance(stages, list) or not stages:
        raise FbnasError(f"{source}: space.stages: must be a non-empty list of stages")
    for si, st in enumerate(stages):
        if not isinstance(st, dict):
            raise FbnasError(f"{source}: space.stages[{si}]: must be a mapping")
        _known(st, {"c", "s", "n", "e", "k", "se", "act"}, f"space.stages[{si}]", source)
        sp.add_choice(f"s{si}.c", "channels", channel_values(get("c", st, f"space.stages[{si}]"),
                                                            f"space.stages[{si}].c"), f"s{si}")
    for si, st in enumerate(stages):
        where = f"space.stages[{si}]"
        n = _ints(st.get("n", 1), f"{source}: {where}.n")[0]
        if n > MAX_REPEATS:
            raise FbnasError(f"{source}: {where}.n: must be at most {MAX_REPEATS}, got {n}")
        s = stride(st.get("s", 1), f"{where}.s")
        sp.stage_strides.append(s)
        e_opts = st.get("e", [1])
        e_opts = [e_opts] if isinstance(e_opts, (int, float)) and not isinstance(e_opts, bool) else e_opts
        if not isinstance(e_opts, list) or not e_opts or not all(
                isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e <= MAX_EXPANSION for e in e_opts):
            raise FbnasError(f"{source}: {where}.e: must be a list of expansion ratios in (0, {MAX_EXPANSION:g}], "
                             f"got {e_opts!r}")
        ks = [kernel(k, f"{where}.k") for k in _per_block(st.get("k", 3), n, f"{source}: {where}.k")]
        ses = _per_block(st.get("se"), n, f"{source}: {where}.se")
        for v in ses:
            if v not in (None, "sigmoid", "hsigmoid"):
                raise FbnasError(f"{source}: {where}.se: must be null, sigmoid or hsigmoid, got {v!r}")
        acts = [act(a, f"{where}.act") for a in _per_block(st.get("act", default_act), n, f"{source}: {where}.act")]
        out_group = sp.stage_group(si)
        for bi in range(n):
            in_group = (sp.STEM if si == 0 else sp.stage_group(si - 1)) if bi == 0 else out_group
            cin_max = sp.choices[in_group].values[-1]
            hidden = sorted({make_divisible(cin_max * float(e), wd) for e in e_opts})
            e_group = sp.add_choice(f"s{si}.b{bi}.mid", "expansion", tuple(hidden), f"s{si}.b{bi}")
            se_hidden = tuple(make_divisible(h * 0.25, wd) for h in hidden)
            sp.blocks.append(BlockPlan(si, bi, int(s) if bi == 0 else 1, ks[bi], ses[bi], acts[bi], in_group,
                                       out_group, e_group, se_hidden))

    # every child must build: check the largest and smallest
    for ch in (sp.max_choices(), [0] * len(sp.choices)):
        try:
            sp.to_spec(ch)
        except FbnasError as e:
            raise FbnasError(f"{source}: space: {e}") from None
    return sp
