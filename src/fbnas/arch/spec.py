"""Serializable architecture spec in the mobile-vision arch_def form ``[op, c, s, n, {kwargs}]``.

A spec is pure data: stages of block definitions plus input size, basic args and head options.
``expand()`` turns it into the flat list of concrete blocks (channels resolved, repeats unrolled)
that the model builder, the cost counters and the latency tables all consume.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbnas.channels import MAX_BLOCKS, MAX_CHANNELS, MAX_INPUT_SIZE, MAX_REPEATS, make_divisible
from fbnas.errors import SpecError, key_name

DEFAULT_BASIC_ARGS: dict[str, Any] = {"width_divisor": 8, "width_multiplier": 1.0, "act": "relu"}
DEFAULT_HEAD: dict[str, Any] = {"dropout": 0.2}
BASIC_ARGS_FIELDS = ("act", "width_divisor", "width_multiplier")
HEAD_FIELDS = ("bias", "drop_path", "dropout")
# a block row as a mapping: each field under its long or its short name
ROW_FIELDS = {"op": ("op",), "out_channels": ("out_channels", "c"), "stride": ("stride", "s"),
              "repeats": ("repeats", "n"), "kwargs": ("kwargs",)}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def closed_mapping(value: Any, valid: tuple[str, ...], where: str) -> dict[str, Any]:
    """``value`` as a mapping whose keys are all in ``valid`` (one line naming the first unknown key)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in valid)
    if unknown:
        raise SpecError(f"{where}.{key_name(unknown[0])}: unknown field; valid: {', '.join(sorted(valid))}")
    return dict(value)


@dataclass
class BlockDef:
    """One arch_def entry: ``repeats`` copies of ``op``; only the first uses ``stride``."""

    op: str
    out_channels: int
    stride: int = 1
    repeats: int = 1
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list:
        row: list = [self.op, self.out_channels, self.stride, self.repeats]
        if self.kwargs:
            row.append(copy.deepcopy(self.kwargs))
        return row

    @classmethod
    def from_any(cls, row: Any, where: str) -> BlockDef:
        if isinstance(row, dict):
            valid = tuple(name for names in ROW_FIELDS.values() for name in names)
            unknown = sorted(str(k) for k in row if k not in valid)
            if unknown:
                raise SpecError(f"{where}: unknown field {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
            got: dict[str, Any] = {}
            for field_name, names in ROW_FIELDS.items():
                given = [n for n in names if n in row]
                if len(given) > 1:
                    raise SpecError(f"{where}: give {field_name!r} once, not as both {' and '.join(given)}")
                if given:
                    got[field_name] = row[given[0]]
            for required in ("op", "out_channels"):
                if required not in got:
                    raise SpecError(f"{where}: missing field {required!r}")
            kw = got.get("kwargs", {})
            if not isinstance(kw, dict):
                raise SpecError(f"{where}: kwargs must be a mapping, got {kw!r}")
            return cls(op=got["op"], out_channels=got["out_channels"], stride=got.get("stride", 1),
                       repeats=got.get("repeats", 1), kwargs=dict(kw))
        if not isinstance(row, (list, tuple)) or not 2 <= len(row) <= 5:
            raise SpecError(f"{where}: expected [op, out_channels, stride, repeats, {{kwargs}}], got {row!r}")
        op, c = row[0], row[1]
        s = row[2] if len(row) > 2 else 1
        n = row[3] if len(row) > 3 else 1
        kw = row[4] if len(row) > 4 else {}
        if not isinstance(kw, dict):
            raise SpecError(f"{where}: kwargs must be a mapping, got {kw!r}")
        return cls(op=op, out_channels=c, stride=s, repeats=n, kwargs=dict(kw))


@dataclass(frozen=True)
class Block:
    """A concrete block after expansion: what the builder builds and the cost model counts."""

    op: str
    in_channels: int
    out_channels: int
    stride: int
    kwargs: dict[str, Any]
    stage: int
    index: int  # position within the stage after repeat expansion
    position: int  # position in the whole network

    @property
    def name(self) -> str:
        return f"stage{self.stage}.block{self.index}"


@dataclass
class ArchSpec:
    """An architecture as data; JSON/YAML round-trip via :meth:`to_dict` / :meth:`from_dict`."""

    stages: list[list[BlockDef]]
    name: str = "custom"
    input_size: int = 224
    in_channels: int = 3
    basic_args: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BASIC_ARGS))
    head: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_HEAD))

    # ---- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "basic_args": copy.deepcopy(self.basic_args),
            "stages": [[b.to_list() for b in stage] for stage in self.stages],
            "head": copy.deepcopy(self.head),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "spec") -> ArchSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: an arch spec must be a mapping with 'stages', got {type(data).__name__}")
        if "arch" in data and "stages" not in data:  # result.json / checkpoints embed the spec
            return cls.from_dict(data["arch"], source)
        unknown = set(data) - {"name", "input_size", "in_channels", "basic_args", "stages", "head"}
        if unknown:
            raise SpecError(f"{source}: unknown field(s) {sorted(unknown)}; valid: name, input_size, "
                            "in_channels, basic_args, stages, head")
        if "stages" not in data:
            raise SpecError(f"{source}: missing field 'stages'")
        stages_raw = data["stages"]
        if not isinstance(stages_raw, list) or not stages_raw:
            raise SpecError(f"{source}: field 'stages' must be a non-empty list of stages")
        stages = []
        for si, stage in enumerate(stages_raw):
            if not isinstance(stage, list) or not stage:
                raise SpecError(f"{source}: stage {si} must be a non-empty list of blocks")
            stages.append([BlockDef.from_any(row, f"{source}: stage {si} block {bi}")
                           for bi, row in enumerate(stage)])
        basic = dict(DEFAULT_BASIC_ARGS)
        basic.update(closed_mapping(data.get("basic_args"), BASIC_ARGS_FIELDS, f"{source}: basic_args"))
        head = dict(DEFAULT_HEAD)
        head.update(closed_mapping(data.get("head"), HEAD_FIELDS, f"{source}: head"))
        if not isinstance(data.get("name", "custom"), (str, int)):
            raise SpecError(f"{source}: field 'name' must be a string, got {data.get('name')!r}")
        spec = cls(
            stages=stages,
            name=str(data.get("name", "custom")),
            input_size=data.get("input_size", 224),
            in_channels=data.get("in_channels", 3),
            basic_args=basic,
            head=head,
        )
        spec.validate(source)
        return spec

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> Path:
        from fbnas.io import atomic_write_text

        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json() + "\n"
        return atomic_write_text(path, text)

    def copy(self, **changes: Any) -> ArchSpec:
        new = ArchSpec.from_dict(self.to_dict())
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    # ---- semantics -----------------------------------------------------------------------------
    @property
    def width_divisor(self) -> int:
        return int(self.basic_args.get("width_divisor", 8))

    def scaled_channels(self, c: int) -> int:
        wm = float(self.basic_args.get("width_multiplier", 1.0))
        if wm == 1.0:
            return int(c)
        return make_divisible(c * wm, self.width_divisor)

    def expand(self) -> list[Block]:
        """Unroll repeats and chain channels; every block gets its input channels and stride."""
        blocks: list[Block] = []
        c_in = self.in_channels
        pos = 0
        for si, stage in enumerate(self.stages):
            idx = 0
            for bdef in stage:
                c_out = self.scaled_channels(bdef.out_channels)
                for r in range(bdef.repeats):
                    blocks.append(Block(bdef.op, c_in, c_out, bdef.stride if r == 0 else 1,
                                        dict(bdef.kwargs), si, idx, pos))
                    c_in = c_out
                    idx += 1
                    pos += 1
        return blocks

    @property
    def out_channels(self) -> int:
        return self.expand()[-1].out_channels

    def validate(self, source: str = "spec") -> None:
        """Raise :class:`SpecError` naming the stage, block and field of the first problem."""
        from fbnas.nn.ops import resolve_op

        def bad(where: str, msg: str) -> SpecError:
            return SpecError(f"{source}: {where}: {msg}")

        if not _is_int(self.input_size) or not 8 <= self.input_size <= MAX_INPUT_SIZE:
            raise bad("field 'input_size'", f"must be an integer in 8..{MAX_INPUT_SIZE}, got {self.input_size!r}")
        if not _is_int(self.in_channels) or not 1 <= self.in_channels <= MAX_CHANNELS:
            raise bad("field 'in_channels'", f"must be an integer in 1..{MAX_CHANNELS}, got {self.in_channels!r}")
        wd = self.basic_args.get("width_divisor", 8)
        if not _is_int(wd) or not 1 <= wd <= MAX_CHANNELS:
            raise bad("basic_args.width_divisor", f"must be an integer in 1..{MAX_CHANNELS}, got {wd!r}")
        wm = self.basic_args.get("width_multiplier", 1.0)
        if not _is_number(wm) or wm <= 0:
            raise bad("basic_args.width_multiplier", f"must be a finite number > 0, got {wm!r}")
        act = self.basic_args.get("act", "relu")
        from fbnas.nn.layers import ACTIVATIONS

        if not isinstance(act, str) or act not in ACTIVATIONS:
            raise bad("basic_args.act", f"unknown activation {act!r}; valid: {sorted(ACTIVATIONS)}")
        dropout = self.head.get("dropout", 0.0)
        if not _is_number(dropout) or not 0 <= dropout < 1:
            raise bad("head.dropout", f"must be in [0, 1), got {dropout!r}")
        drop_path = self.head.get("drop_path", 0.0)
        if not isinstance(drop_path, (int, float)) or isinstance(drop_path, bool) or not 0 <= drop_path < 1:
            raise bad("head.drop_path", f"must be in [0, 1), got {drop_path!r}")
        if not isinstance(self.head.get("bias", True), bool):
            raise bad("head.bias", f"must be true or false, got {self.head.get('bias')!r}")
        total = 0
        expansions: dict[tuple[int, int], float] = {}
        for si, stage in enumerate(self.stages):
            for bi, b in enumerate(stage):
                where = f"stage {si} block {bi} ({b.op})"
                if not isinstance(b.op, str):
                    raise bad(f"stage {si} block {bi}", f"field 'op' must be a string, got {b.op!r}")
                if not _is_int(b.out_channels) or not 1 <= b.out_channels <= MAX_CHANNELS:
                    raise bad(where, f"field 'out_channels' must be an integer in 1..{MAX_CHANNELS}, "
                                     f"got {b.out_channels!r}")
                if not _is_int(b.stride) or b.stride not in (1, 2):
                    raise bad(where, f"field 'stride' must be 1 or 2, got {b.stride!r}")
                if not _is_int(b.repeats) or not 1 <= b.repeats <= MAX_REPEATS:
                    raise bad(where, f"field 'repeats' must be an integer in 1..{MAX_REPEATS}, got {b.repeats!r}")
                total += b.repeats
                if total > MAX_BLOCKS:
                    raise bad(where, f"the network has more than {MAX_BLOCKS} blocks")
                scaled = self.scaled_channels(b.out_channels)
                if scaled > MAX_CHANNELS:
                    raise bad(where, f"{b.out_channels} channels times width_multiplier {wm:g} give {scaled}, more "
                                     f"than {MAX_CHANNELS}")
                try:
                    _, params = resolve_op(b.op, b.kwargs, self.basic_args)
                except SpecError as e:
                    raise bad(where, str(e)) from None
                if _is_number(params.get("e")):
                    expansions[(si, bi)] = float(params["e"])
                reinf = b.kwargs.get("reinf", 0)
                if reinf and reinf != self.in_channels:  # input reinforcement reads the network's input image
                    raise bad(where, f"field 'reinf' must be 0 or in_channels ({self.in_channels}), got {reinf!r}")
        row_of = [(si, bi) for si, stage in enumerate(self.stages) for bi, b in enumerate(stage)
                  for _ in range(b.repeats)]
        for blk, (si, bi) in zip(self.expand(), row_of, strict=True):
            family, params = resolve_op(blk.op, blk.kwargs, self.basic_args)
            try:
                family.check_block(blk.in_channels, blk.out_channels, blk.stride, params)
            except SpecError as e:
                raise bad(f"stage {si} block {bi} ({blk.op})", str(e)) from None
            if expansions:
                e_ratio = expansions.get((si, bi))
                if e_ratio is not None and e_ratio * blk.in_channels > MAX_CHANNELS:
                    raise bad(f"stage {si} block {bi} ({blk.op})",
                              f"expansion e {e_ratio:g} of {blk.in_channels} input channels gives "
                              f"{e_ratio * blk.in_channels:g} hidden channels, more than {MAX_CHANNELS}")


def load_spec(path: str | Path) -> ArchSpec:
    """Load a spec from JSON or YAML (also accepts result.json files that embed an ``arch``)."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the file ({type(e).__name__})") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            from fbnas.io import load_yaml

            data = load_yaml(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is a user error
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        mark = getattr(e, "problem_mark", None)
        if getattr(e, "problem", None) and mark is not None:  # YAML: the problem and where, not the context
            first = f"{e.problem} (line {mark.line + 1}, column {mark.column + 1})"
        kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
        raise SpecError(f"{path}: not valid {kind}: {first}") from None
    return ArchSpec.from_dict(data, source=str(path))
