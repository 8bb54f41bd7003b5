"""The stage-wise space of FBNetV3 (seed 000, "FBNet V3"; seed 004): input resolution, stem width, and per stage
the kernel, expansion, output channels, depth (repeats) and SE on/off of its inverted-residual blocks.

A space is YAML data (``kind: stagewise`` in ``defs/`` or a user file)::

    kind: stagewise
    name: fbnetv3_fmnist
    input_size: 28              # the dataset's image size
    in_channels: 1
    resolutions: [20, 24, 28]   # candidate input resolutions (subsamplings of the input)
    width_divisor: 8
    act: hswish                 # activation of every block (a stage may set its own)
    se_gate: hsigmoid           # the SE gate when a stage's SE is on
    block_args: {zero_last_bn_gamma: true}   # extra kwargs of every ir block
    stem: {c: [16, 24], s: 2, k: 3, act: hswish, args: {bias: true}}
    stages:                     # one row per stage; k / e / c / n / se: one value or a list of options
      - {c: [16, 24], s: 1, n: [1, 2], e: 1, k: [3, 5], se: false}
      - {c: [24, 32], s: 2, n: 1, e: [4, 5], k: [3, 5], se: false}
      - {c: same, s: 1, n: [2, 3, 4], e: [2, 3], k: [3, 5], se: false}   # same: the previous stage's width
    last: {c: 256, act: hswish}                       # a 1x1 conv before the classifier, or
    # last: {pool: true, c: 1984, e: 6, act: hswish}  # FBNetV3's ir_pool head
    head: {dropout: 0.2}

Dimensions (all :class:`Choice`, in this order): ``res``, ``stem.c``, then per stage ``s{i}.k``, ``s{i}.e``,
``s{i}.c`` (absent for ``c: same``: the stage's blocks take the width of the stage before, as the
mobile-vision definitions of FBNetV3 A-G, whose stages come in pairs of a stride-2 row and its repeats),
``s{i}.n`` and ``s{i}.se``; a stage's variables form the group ``s{i}``. A sample builds an
:class:`ArchSpec` of registered ops: one ``ir`` row ``[ir, c, s, n, {k, e, act, se}]`` per stage.

The cost walk (``term_dims`` / ``cost_terms``): depth makes the set of blocks vary with the sample, so the walk
has a position for every block of the *deepest* network; block ``j`` of stage ``i`` depends on ``res``, its
input width, ``s{i}.c``, ``s{i}.e``, ``s{i}.k``, ``s{i}.se`` and, where ``j`` can lie beyond the stage's depth,
``s{i}.n``; the options that leave it out put an identity there (``skip`` with equal widths and stride 1:
no MACs, no params). The walk therefore sums to exactly the counted cost of every sample's network.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fbnas.arch.spec import DEFAULT_BASIC_ARGS, DEFAULT_HEAD, ArchSpec, Block, BlockDef
from fbnas.errors import SpecError
from fbnas.space.base import Built, CostTerm, DimSpace, Sample
from fbnas.space.dims import Choice, Dim

if TYPE_CHECKING:
    from fbnas.cost.placement import Placed

SAME = "same"


@dataclass(frozen=True)
class StagePlan:
    """One stage: its stride, activation and the names of its dimensions (``c`` may be another stage's)."""

    index: int
    stride: int
    act: str
    k: str
    e: str
    c: str  # the dimension naming the stage's width (its own, or the previous stage's for ``c: same``)
    n: str
    se: str


@dataclass
class StagewiseSpace(DimSpace):
    name: str
    input_size: int
    in_channels: int
    width_divisor: int
    act: str
    se_gate: str
    block_args: dict[str, Any]
    stem_k: int
    stem_s: int
    stem_act: str
    stem_args: dict[str, Any]
    last: dict[str, Any]  # {c, act} (1x1 conv) or {pool: true, c, e, act} (ir_pool)
    head: dict[str, Any]
    choices: list[Choice] = field(default_factory=list)
    stages: list[StagePlan] = field(default_factory=list)

    @property
    def dims(self) -> list[Dim]:  # type: ignore[override]
        return list(self.choices)

    # ---- building --------------------------------------------------------------------------------
    def stem_row(self, c: int) -> BlockDef:
        return BlockDef("conv", int(c), self.stem_s, 1, {"k": self.stem_k, "act": self.stem_act, **self.stem_args})

    def block_kwargs(self, plan: StagePlan, k: int, e: float, se: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"k": int(k), "e": e, "act": plan.act, **self.block_args}
        if se:
            kw["se"] = self.se_gate
        return kw

    def last_row(self) -> BlockDef:
        if self.last.get("pool"):
            return BlockDef("ir_pool", int(self.last["c"]), 1, 1, {"e": self.last["e"], "act": self.last["act"]})
        return BlockDef("conv", int(self.last["c"]), 1, 1, {"k": 1, "act": self.last["act"]})

    def build(self, sample: Sample, name: str = "stagewise_child") -> Built:
        s = self.validate(sample)
        stages: list[list[BlockDef]] = [[self.stem_row(s["stem.c"])]]
        for plan in self.stages:
            kw = self.block_kwargs(plan, s[plan.k], s[plan.e], s[plan.se])
            stages.append([BlockDef("ir", int(s[plan.c]), plan.stride, int(s[plan.n]), kw)])
        if self.last:
            stages.append([self.last_row()])
        spec = ArchSpec(stages=stages, name=name, input_size=int(s["res"]), in_channels=self.in_channels,
                        basic_args={**DEFAULT_BASIC_ARGS, "width_divisor": self.width_divisor, "act": self.act},
                        head={**DEFAULT_HEAD, **self.head})
        spec.validate(name)
        return Built(arch=spec)

    # ---- the cost walk ---------------------------------------------------------------------------
    def input_dim(self, i: int) -> str:
        """The dimension naming stage ``i``'s input width (the stem's or the previous stage's)."""
        return "stem.c" if i == 0 else self.stages[i - 1].c

    def max_depth(self, plan: StagePlan) -> int:
        return int(max(self.dim(plan.n).values))

    def min_depth(self, plan: StagePlan) -> int:
        return int(min(self.dim(plan.n).values))

    def block_dims(self, plan: StagePlan, j: int) -> tuple[str, ...]:
        cin = self.input_dim(plan.index) if j == 0 else plan.c
        dims = ["res", cin, plan.c, plan.e, plan.k, plan.se]
        if j >= self.min_depth(plan):
            dims.append(plan.n)
        return tuple(dict.fromkeys(dims))

    def term_dims(self) -> list[tuple[str, ...]]:
        """stem: (res, stem.c); block j of stage i: (res, input width, width, e, k, se[, n]); last: (res, width);
        classifier: (res) after a 1x1 conv or pool head, (res, width) without one."""
        out: list[tuple[str, ...]] = [("res", "stem.c")]
        for plan in self.stages:
            out += [self.block_dims(plan, j) for j in range(self.max_depth(plan))]
        last_c = self.stages[-1].c
        if self.last:
            out.append(("res", last_c))
            out.append(("res",))
        else:
            out.append(("res", last_c))
        return out

    def stage_sizes(self, res: int) -> list[int]:
        """The input map size of every stage at resolution ``res`` (after the stem), then the output size."""
        from fbnas.cost.formulas import conv_out_size

        h = conv_out_size(res, self.stem_k, self.stem_s, self.stem_k // 2)
        sizes = []
        for plan in self.stages:
            sizes.append(h)
            h = conv_out_size(h, 3, plan.stride, 1)  # any odd kernel with "same" padding
        return sizes + [h]

    def cost_terms(self, num_classes: int = 1000) -> list[CostTerm]:
        """The walk of :meth:`term_dims` built directly (block by block, not network by network)."""
        from fbnas.cost.placement import Placed

        cache = self.__dict__.setdefault("_cost_terms", {})
        if num_classes in cache:
            return cache[num_classes]
        basic = {**DEFAULT_BASIC_ARGS, "width_divisor": self.width_divisor, "act": self.act}
        res_values = self.dim("res").values
        sizes = {r: self.stage_sizes(int(r)) for r in res_values}
        image = {r: (self.in_channels, int(r), int(r)) for r in res_values}
        terms: list[CostTerm] = []

        def table(dims: tuple[str, ...], make) -> CostTerm:
            opts = [self.dim(d).values for d in dims]
            blocks = {}
            for combo in itertools.product(*(range(len(o)) for o in opts)):
                blocks[combo] = make({d: opts[k][i] for k, (d, i) in enumerate(zip(dims, combo, strict=True))})
            return CostTerm(dims, blocks)

        def stem(v: dict) -> Placed:
            r = v["res"]
            row = self.stem_row(v["stem.c"])
            b = Block(row.op, self.in_channels, row.out_channels, row.stride, row.kwargs, 0, 0, 0)
            return Placed(b, basic, int(r), int(r), sizes[r][0], sizes[r][0], image=image[r])

        terms.append(table(("res", "stem.c"), stem))
        pos = 1
        for plan in self.stages:
            for j in range(self.max_depth(plan)):
                def block(v: dict, plan: StagePlan = plan, j: int = j, pos: int = pos) -> Placed:
                    r = v["res"]
                    h_in, h_out = sizes[r][plan.index], sizes[r][plan.index + 1]
                    c = int(v[plan.c])
                    if j >= int(v.get(plan.n, self.min_depth(plan))):  # beyond this sample's depth: identity
                        b = Block("skip", c, c, 1, {}, plan.index + 1, j, pos)
                        return Placed(b, basic, h_out, h_out, h_out, h_out, image=image[r])
                    cin = int(v[self.input_dim(plan.index)]) if j == 0 else c
                    kw = self.block_kwargs(plan, v[plan.k], v[plan.e], v[plan.se])
                    h = h_in if j == 0 else h_out
                    b = Block("ir", cin, c, plan.stride if j == 0 else 1, kw, plan.index + 1, j, pos)
                    return Placed(b, basic, h, h, h_out, h_out, image=image[r])

                terms.append(table(self.block_dims(plan, j), block))
                pos += 1
        last_c = self.stages[-1].c
        bias = bool(self.head.get("bias", True))
        if self.last:
            row = self.last_row()

            def last(v: dict) -> Placed:
                r = v["res"]
                h = sizes[r][-1]
                b = Block(row.op, int(v[last_c]), row.out_channels, 1, row.kwargs, len(self.stages) + 1, 0, pos)
                ho = 1 if self.last.get("pool") else h
                return Placed(b, basic, h, h, ho, ho, image=image[r])

            def classifier(v: dict) -> Placed:
                r = v["res"]
                h = 1 if self.last.get("pool") else sizes[r][-1]
                return Placed(None, basic, h, h, 1, 1, channels=row.out_channels, num_classes=num_classes,
                              bias=bias, image=image[r])

            terms.append(table(("res", last_c), last))
            terms.append(table(("res",), classifier))
        else:
            def bare_classifier(v: dict) -> Placed:
                r = v["res"]
                h = sizes[r][-1]
                return Placed(None, basic, h, h, 1, 1, channels=int(v[last_c]), num_classes=num_classes,
                              bias=bias, image=image[r])

            terms.append(table(("res", last_c), bare_classifier))
        cache[num_classes] = terms
        return terms


# ---- parsing ---------------------------------------------------------------------------------------
_FIELDS = {"kind", "name", "input_size", "in_channels", "resolutions", "width_divisor", "act", "se_gate",
           "block_args", "stem", "stages", "last", "head"}
_STAGE_FIELDS = {"c", "s", "n", "e", "k", "se", "act"}


def _options(v: Any, where: str, kind: str) -> tuple[Any, ...]:
    vals = v if isinstance(v, list) else [v]
    if not vals:
        raise SpecError(f"{where}: needs at least one option")
    for x in vals:
        if kind == "bool":
            ok = isinstance(x, bool)
        elif kind == "num":
            ok = isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0
        else:
            ok = isinstance(x, int) and not isinstance(x, bool) and x >= 1
            if ok and kind == "kernel":
                ok = x % 2 == 1
        if not ok:
            what = {"bool": "true or false", "num": "numbers > 0", "kernel": "odd positive integers",
                    "int": "positive integers"}[kind]
            raise SpecError(f"{where}: options must be {what}, got {x!r}")
    if len({(type(x).__name__, x) for x in vals}) != len(vals):
        raise SpecError(f"{where}: options must be distinct, got {vals!r}")
    return tuple(sorted(vals)) if kind != "bool" else tuple(sorted(vals, key=int))


def _known(node: Any, valid: set[str], where: str) -> dict:
    if not isinstance(node, dict):
        raise SpecError(f"{where}: must be a mapping")
    extra = sorted(set(node) - valid)
    if extra:
        raise SpecError(f"{where}.{extra[0]}: unknown field; valid: {', '.join(sorted(valid))}")
    return node


def _act(v: Any, where: str) -> str:
    from fbnas.nn.layers import ACTIVATIONS

    if v not in ACTIVATIONS:
        raise SpecError(f"{where}: unknown activation {v!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
    return str(v)


def _int(v: Any, where: str, low: int = 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise SpecError(f"{where}: must be an integer >= {low}, got {v!r}")
    return v


def parse_stagewise(d: Any, source: str = "space") -> StagewiseSpace:
    """Validate a ``kind: stagewise`` mapping; every error names ``source: field``."""
    try:
        return _parse(d, source)
    except SpecError as e:
        msg = str(e)
        raise SpecError(msg if msg.startswith(f"{source}:") else f"{source}: {msg}") from None


def _parse(d: Any, source: str) -> StagewiseSpace:
    d = _known(d, _FIELDS, "space")
    for key in ("input_size", "in_channels", "resolutions", "stem", "stages"):
        if key not in d:
            raise SpecError(f"space.{key}: missing")
    size = _int(d["input_size"], "space.input_size", 8)
    res = _options(d["resolutions"], "space.resolutions", "int")
    if max(res) > size or min(res) < 8:
        raise SpecError(f"space.resolutions: must lie in [8, input_size {size}], got {list(res)}")
    wd = _int(d.get("width_divisor", 8), "space.width_divisor")
    act = _act(d.get("act", "relu"), "space.act")
    gate = d.get("se_gate", "hsigmoid")
    if gate not in ("sigmoid", "hsigmoid"):
        raise SpecError(f"space.se_gate: must be sigmoid or hsigmoid, got {gate!r}")
    block_args = d.get("block_args") or {}
    if not isinstance(block_args, dict):
        raise SpecError("space.block_args: must be a mapping of ir kwargs")
    stem = _known(d["stem"], {"c", "s", "k", "act", "args"}, "space.stem")
    if "c" not in stem:
        raise SpecError("space.stem.c: missing")
    stem_s = stem.get("s", 2)
    if stem_s not in (1, 2):
        raise SpecError(f"space.stem.s: must be 1 or 2, got {stem_s!r}")
    last = d.get("last") or {}
    last = dict(_known(last, {"c", "act", "pool", "e"}, "space.last"))
    if last:
        last["c"] = _int(last.get("c"), "space.last.c")
        last["act"] = _act(last.get("act", act), "space.last.act")
        if last.get("pool"):
            last["e"] = _options(last.get("e", 6), "space.last.e", "num")[0]
        elif "e" in last:
            raise SpecError("space.last.e: only a pool head (pool: true) has an expansion")
    head = d.get("head") or {}
    if not isinstance(head, dict):
        raise SpecError("space.head: must be a mapping")
    sp = StagewiseSpace(name=str(d.get("name", "stagewise")), input_size=size,
                        in_channels=_int(d["in_channels"], "space.in_channels"), width_divisor=wd, act=act,
                        se_gate=gate, block_args=dict(block_args), stem_k=_options(stem.get("k", 3), "space.stem.k",
                                                                                  "kernel")[0],
                        stem_s=stem_s, stem_act=_act(stem.get("act", act), "space.stem.act"),
                        stem_args=dict(stem.get("args") or {}), last=last, head=dict(head))
    sp.choices.append(Choice("res", res, group="res"))
    sp.choices.append(Choice("stem.c", _options(stem["c"], "space.stem.c", "int"), group="stem"))
    stages = d["stages"]
    if not isinstance(stages, list) or not stages:
        raise SpecError("space.stages: must be a non-empty list of stages")
    width = "stem.c"
    for i, st in enumerate(stages):
        where = f"space.stages[{i}]"
        st = _known(st, _STAGE_FIELDS, where)
        for key in ("c", "n", "e", "k"):
            if key not in st:
                raise SpecError(f"{where}.{key}: missing")
        stride = st.get("s", 1)
        if stride not in (1, 2):
            raise SpecError(f"{where}.s: must be 1 or 2, got {stride!r}")
        group = f"s{i}"
        sp.choices.append(Choice(f"s{i}.k", _options(st["k"], f"{where}.k", "kernel"), group=group))
        sp.choices.append(Choice(f"s{i}.e", _options(st["e"], f"{where}.e", "num"), group=group))
        if st["c"] == SAME:
            if i == 0:
                raise SpecError(f"{where}.c: 'same' needs a stage before it")
        else:
            cs = _options(st["c"], f"{where}.c", "int")
            bad = [c for c in cs if c % wd]
            if bad:
                raise SpecError(f"{where}.c: channel options must be multiples of width_divisor {wd}, got {bad[0]}")
            sp.choices.append(Choice(f"s{i}.c", cs, group=group))
            width = f"s{i}.c"
        sp.choices.append(Choice(f"s{i}.n", _options(st["n"], f"{where}.n", "int"), group=group))
        ses = _options(st.get("se", False), f"{where}.se", "bool")
        sp.choices.append(Choice(f"s{i}.se", ses, labels=tuple("on" if v else "off" for v in ses), group=group))
        sp.stages.append(StagePlan(i, int(stride), _act(st.get("act", act), f"{where}.act"), f"s{i}.k",
                                   f"s{i}.e", width, f"s{i}.n", f"s{i}.se"))
    sp.check_dim_names()
    # every child must build: the smallest and the largest options of every dimension
    for pick in (0, -1):
        try:
            sp.build({c.name: c.values[pick] for c in sp.choices})
        except SpecError as e:
            raise SpecError(f"space: {e}") from None
    return sp
