"""FP-NAS's multi-variate spaces (seed 002, section 4): the FBNetV2-F macro-architecture with several search
variables per layer, and its F-Fine and F++ variants.

Every layer ``A^l`` is a tuple of variables (section 3.3): kernel size ``k``, nonlinearity ``act``, attention
``att`` (``none``, ``se``; F++ adds split attention ``sa2``, ``sa4``: :mod:`fbnas.nn.attention`) and the MBConv
expansion ``e``, plus the stage's output channels ``c``. The variables of one layer are the dimensions of one
``group``, so a strategy can hold one categorical per variable (the factorized distribution, FD) or one over the
group's tuple (the joint distribution, JD). In **F** a stage's blocks share one micro-architecture: the layer is
the stage, its group ``s{i}`` holds ``s{i}.c, s{i}.k, s{i}.act, s{i}.att, s{i}.e``. **F-Fine** (``fine: true``) unties
it per block: ``s{i}.b{j}.k`` ... in group ``s{i}.b{j}``, the stage's channels in the group of its first block
(the block that changes the width). The stem's channels are the group ``stem``.

A space is YAML data (``kind: fpnas``; ``defs/fbnetv2_f_fmnist.yaml``, ``fbnetv2_fpp_fmnist.yaml``,
``fbnetv2_f.yaml``)::

    kind: fpnas
    input_size: 28
    in_channels: 1
    width_divisor: 4          # channel options are multiples of it; hidden widths are rounded to it
    act: relu                 # the spec's default activation (fixed layers)
    fine: false               # F-Fine: every block its own micro-architecture
    se_gate: hsigmoid         # SE's gate (att: se)
    micro: {k: [3, 5], act: [relu, hswish], att: [none, se, sa2, sa4]}  # every block's options ...
    stem: {c: [8, 12, 16], s: 2, k: 3, act: hswish}
    stages:                   # ... unless a stage gives its own k / act / att
      - {c: [8, 12, 16], s: 1, n: 1, e: [1]}
      - {c: [16, 20, 24], s: 2, n: 2, e: [1, 2, 3, 4, 6]}
    last: {c: 128, act: hswish}           # fixed 1x1 conv (or {op: ir_pool, c: 1984, e: 6, act: hswish})
    dropout: 0.1

A sample builds plain ops: ``ir`` (``se: se_gate`` for ``att: se``) or ``ir_sa`` (``radix`` 2 / 4), with
``always_pw`` so that every block keeps its 1x1 expansion. Strides and odd kernels padded ``k // 2`` fix every
block's input size, so the cost walk places each block directly (:meth:`FPNasSpace.cost_terms`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from fbnas.arch.spec import ArchSpec, Block, BlockDef
from fbnas.errors import SpecError
from fbnas.space.base import Built, CostTerm, DimSpace, Sample
from fbnas.space.dims import Choice, Dim

VARS = ("k", "act", "att", "e")  # the micro-architecture variables of a block, in dimension order
STEM = "stem.c"


def attention_op(att: str, se_gate: str) -> tuple[str, dict[str, Any]]:
    """The op and kwargs of an attention option: ``none`` / ``se`` (``ir``) or ``sa{radix}`` (``ir_sa``)."""
    if att == "none":
        return "ir", {}
    if att == "se":
        return "ir", {"se": se_gate}
    return "ir_sa", {"radix": int(att[2:])}


def valid_attention(v: Any) -> bool:
    return v in ("none", "se") or (isinstance(v, str) and v.startswith("sa") and v[2:].isdigit() and int(v[2:]) >= 2)


@dataclass(frozen=True)
class StagePlan:
    """A stage: its channel options, stride, depth and every micro variable's options."""

    c: tuple[int, ...]
    s: int
    n: int
    options: dict[str, tuple[Any, ...]]  # VARS -> options


@dataclass
class FPNasSpace(DimSpace):
    input_size: int
    in_channels: int
    width_divisor: int
    act: str
    fine: bool
    se_gate: str
    stem_c: tuple[int, ...]
    stem_s: int
    stem_k: int
    stem_act: str
    stages: list[StagePlan]
    last: dict[str, Any]  # op (conv | ir_pool), c, act, e
    dropout: float
    name: str = "fpnas"
    _dims: list[Choice] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        dims = [Choice(STEM, self.stem_c, group="stem")]
        for si, st in enumerate(self.stages):
            dims.append(Choice(self.channel_dim(si), st.c, group=self.group_of(si, 0)))
            for j in range(1 if not self.fine else st.n):
                dims += [Choice(self.var_dim(si, j, v), st.options[v], group=self.group_of(si, j)) for v in VARS]
        self._dims = dims
        self.check_dim_names()

    # ---- names ------------------------------------------------------------------------------------
    @property
    def dims(self) -> list[Dim]:  # type: ignore[override]
        return list(self._dims)

    def group_of(self, stage: int, block: int) -> str:
        return f"s{stage}.b{block}" if self.fine else f"s{stage}"

    def channel_dim(self, stage: int) -> str:
        return f"s{stage}.c"

    def var_dim(self, stage: int, block: int, var: str) -> str:
        return f"s{stage}.b{block}.{var}" if self.fine else f"s{stage}.{var}"

    def in_dim(self, stage: int, block: int) -> str:
        """The dimension of a block's input width."""
        if block > 0:
            return self.channel_dim(stage)
        return STEM if stage == 0 else self.channel_dim(stage - 1)

    def choice_names(self, choices: list[int]) -> list[str]:
        return [f"{d.name}={d.labels[int(c)]}" for d, c in zip(self._dims, choices, strict=True)]

    # ---- building ---------------------------------------------------------------------------------
    def var_names(self, stage: int, block: int) -> dict[str, str]:
        """The dimension of each micro variable of block ``block`` of stage ``stage`` (F: the stage's)."""
        return {v: self.var_dim(stage, block if self.fine else 0, v) for v in VARS}

    def block_def(self, s: Sample, stage: int, block: int) -> BlockDef:
        """Block ``block`` of stage ``stage`` of the validated sample ``s``."""
        names = self.var_names(stage, block)
        op, kw = attention_op(s[names["att"]], self.se_gate)
        kwargs = {"k": s[names["k"]], "e": s[names["e"]], "act": s[names["act"]], "always_pw": True, **kw}
        st = self.stages[stage]
        return BlockDef(op, int(s[self.channel_dim(stage)]), st.s if block == 0 else 1, 1, kwargs)

    def spec_stages(self, s: Sample) -> list[list[BlockDef]]:
        stages = [[BlockDef("conv", int(s[STEM]), self.stem_s, 1, {"k": self.stem_k, "act": self.stem_act})]]
        for si, st in enumerate(self.stages):
            stages.append([self.block_def(s, si, j) for j in range(st.n)])
        last = self.last
        kw = {"k": 1, "act": last["act"]} if last["op"] == "conv" else {"e": last["e"], "act": last["act"]}
        stages.append([BlockDef(last["op"], int(last["c"]), 1, 1, kw)])
        return stages

    def build(self, sample: Sample, name: str | None = None) -> Built:
        s = self.validate(sample)
        return Built(arch=ArchSpec(stages=self.spec_stages(s), name=name or f"{self.name}_child",
                                   input_size=self.input_size, in_channels=self.in_channels,
                                   basic_args={"width_divisor": self.width_divisor, "width_multiplier": 1.0,
                                               "act": self.act},
                                   head={"dropout": self.dropout}))

    # ---- the cost walk ----------------------------------------------------------------------------
    def term_dims(self) -> list[tuple[str, ...]]:
        """stem: its width; block: its micro variables, input and output widths; last conv: the last stage's
        width; classifier: none."""
        out: list[tuple[str, ...]] = [(STEM,)]
        for si, st in enumerate(self.stages):
            for j in range(st.n):
                micro = list(self.var_names(si, j).values())
                out.append(tuple(dict.fromkeys([*micro, self.in_dim(si, j), self.channel_dim(si)])))
        out.append((self.channel_dim(len(self.stages) - 1),))
        out.append(())
        return out

    def cost_terms(self, num_classes: int = 1000) -> list[CostTerm]:
        """As :meth:`DimSpace.cost_terms`, placing each block directly: its input size does not depend on any
        choice, and its op on its term's dimensions alone."""
        cache = self.__dict__.setdefault("_cost_terms", {})
        if num_classes in cache:
            return cache[num_classes]
        from fbnas.cost.placement import Placed, place

        base = self.default_sample()
        ref = place(self.build(base).arch, num_classes)
        terms = []
        for pos, dims in enumerate(self.term_dims()):
            r = ref[pos]
            if not dims:
                terms.append(CostTerm((), {(): r}))
                continue
            choices = [self.dim(n) for n in dims]
            table = {}
            for combo in itertools.product(*(range(c.size) for c in choices)):  # type: ignore[union-attr]
                s = {**base, **{c.name: c.values[i] for c, i in zip(choices, combo, strict=True)}}  # type: ignore
                table[combo] = Placed(self._block_at(s, pos), r.basic_args, r.h, r.w, r.out_h, r.out_w,
                                      image=r.image)
            terms.append(CostTerm(tuple(dims), table))
        cache[num_classes] = terms
        return terms

    def _block_at(self, s: Sample, pos: int) -> Block:
        """The expanded block at network position ``pos`` (as ``ArchSpec.expand`` numbers it)."""
        stages = self.spec_stages(s)
        flat = [(si, j, b) for si, stage in enumerate(stages) for j, b in enumerate(stage)]
        si, j, b = flat[pos]
        cin = self.in_channels if pos == 0 else flat[pos - 1][2].out_channels
        return Block(b.op, cin, b.out_channels, b.stride, dict(b.kwargs), si, j, pos)

    # ---- distributions ----------------------------------------------------------------------------
    def group_sizes(self) -> dict[str, list[int]]:
        """Options of every dimension, per group (what FD and JD parameter counts follow from)."""
        return {g: [self.dim(n).size for n in names] for g, names in self.groups().items()}  # type: ignore


# ---- parsing --------------------------------------------------------------------------------------
_FIELDS = {"kind", "name", "input_size", "in_channels", "width_divisor", "act", "fine", "se_gate", "micro", "stem",
           "stages", "last", "dropout"}


def parse_fpnas_space(d: Any, source: str = "space", fine: bool | None = None) -> FPNasSpace:
    """Validate an FP-NAS space mapping; every error is one line naming ``source: space.FIELD``. ``fine``
    overrides the file's F-Fine switch."""
    from fbnas.nn.layers import ACTIVATIONS

    def fail(where: str, msg: str) -> SpecError:
        return SpecError(f"{source}: space.{where}: {msg}")

    def known(node: Any, valid: set[str], where: str) -> dict:
        if not isinstance(node, dict):
            raise fail(where, "must be a mapping")
        extra = sorted(set(node) - valid)
        if extra:
            at = f"{where}.{extra[0]}" if where else extra[0]
            raise fail(at, f"unknown field; valid: {', '.join(sorted(valid))}")
        return node

    def pos_int(v: Any, where: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise fail(where, f"must be a positive integer, got {v!r}")
        return v

    def kernel(v: Any, where: str) -> int:
        if pos_int(v, where) % 2 == 0:
            raise fail(where, f"must be an odd kernel size, got {v!r}")
        return v

    def act(v: Any, where: str) -> str:
        if v not in ACTIVATIONS:
            raise fail(where, f"unknown activation {v!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
        return str(v)

    def options(v: Any, where: str, check) -> tuple[Any, ...]:
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise fail(where, "needs at least one option")
        out = tuple(check(x, f"{where}[{i}]") for i, x in enumerate(vals))
        if len(set(out)) != len(out):
            raise fail(where, f"options must be distinct, got {vals!r}")
        return out

    def expansion(v: Any, where: str) -> float | int:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise fail(where, f"must be an expansion ratio > 0, got {v!r}")
        return v

    def attention(v: Any, where: str) -> str:
        if not valid_attention(v):
            raise fail(where, f"must be none, se or sa<radix> (radix >= 2, e.g. sa2), got {v!r}")
        return str(v)

    checks = {"k": kernel, "act": act, "att": attention, "e": expansion}
    d = known(d, _FIELDS, "")
    for key in ("input_size", "in_channels", "stem", "stages", "last"):
        if key not in d:
            raise fail(key, "missing")
    wd = pos_int(d.get("width_divisor", 8), "width_divisor")

    def width(v: Any, where: str) -> int:
        if pos_int(v, where) % wd:
            raise fail(where, f"channel options must be multiples of width_divisor {wd}, got {v}")
        return v

    fine_v = d.get("fine", False) if fine is None else fine
    if not isinstance(fine_v, bool):
        raise fail("fine", f"must be true or false, got {fine_v!r}")
    gate = d.get("se_gate", "hsigmoid")
    if gate not in ("sigmoid", "hsigmoid"):
        raise fail("se_gate", f"must be sigmoid or hsigmoid, got {gate!r}")
    micro = known(d.get("micro", {}), set(VARS) - {"e"}, "micro")
    defaults = {"k": [3], "act": [d.get("act", "relu")], "att": ["none"], **micro}
    stem = known(d["stem"], {"c", "s", "k", "act"}, "stem")
    if "c" not in stem:
        raise fail("stem.c", "missing")
    stem_s = stem.get("s", 2)
    if stem_s not in (1, 2):
        raise fail("stem.s", f"must be 1 or 2, got {stem_s!r}")
    if not isinstance(d["stages"], list) or not d["stages"]:
        raise fail("stages", "must be a non-empty list of stages")
    stages = []
    for si, raw in enumerate(d["stages"]):
        where = f"stages[{si}]"
        st = known(raw, {"c", "s", "n", "e", *VARS}, where)
        for key in ("c", "e"):
            if key not in st:
                raise fail(f"{where}.{key}", "missing")
        s = st.get("s", 1)
        if s not in (1, 2):
            raise fail(f"{where}.s", f"must be 1 or 2, got {s!r}")
        opts = {v: options(st[v] if v in st else defaults[v], f"{where}.{v}", checks[v]) for v in VARS}
        stages.append(StagePlan(options(st["c"], f"{where}.c", width), int(s), pos_int(st.get("n", 1), f"{where}.n"),
                                opts))
    last = known(d["last"], {"op", "c", "act", "e"}, "last")
    last_op = last.get("op", "conv")
    if last_op not in ("conv", "ir_pool"):
        raise fail("last.op", f"must be conv or ir_pool, got {last_op!r}")
    dropout = d.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise fail("dropout", f"must be in [0, 1), got {dropout!r}")
    space = FPNasSpace(
        input_size=pos_int(d["input_size"], "input_size"), in_channels=pos_int(d["in_channels"], "in_channels"),
        width_divisor=wd, act=act(d.get("act", "relu"), "act"), fine=fine_v, se_gate=gate,
        stem_c=options(stem["c"], "stem.c", width), stem_s=int(stem_s), stem_k=kernel(stem.get("k", 3), "stem.k"),
        stem_act=act(stem.get("act", d.get("act", "relu")), "stem.act"), stages=stages,
        last={"op": last_op, "c": pos_int(last.get("c"), "last.c"), "act": act(last.get("act", "relu"), "last.act"),
              "e": expansion(last.get("e", 6), "last.e")},
        dropout=float(dropout), name=str(d.get("name", "fpnas")))
    for pick in (0, -1):  # the smallest and the largest child must build
        sample = {dim.name: dim.values[pick] for dim in space.dims}  # type: ignore[union-attr]
        try:
            arch = space.build(sample).arch
            assert arch is not None
            arch.validate(source)
            from fbnas.cost.placement import place

            place(arch, 10)
        except SpecError as e:
            raise SpecError(f"{source}: space: {e}") from None
    return space
