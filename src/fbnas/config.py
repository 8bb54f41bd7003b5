"""The one config idiom: pydantic v2 models, strict and closed, loaded from YAML with presets and ``--set``.

A config model subclasses :class:`StrictModel`: unknown keys are errors (``extra="forbid"``), values are not
coerced (``"1"`` is not a number, ``true`` is not an integer), NaN and infinity are refused, and every failure
is one line naming the field: ``cfg.yaml: schedule.warmup_epochs: must be >= 0, got -1``.

:func:`load_config` merges the YAML file, one of its ``presets`` and dotted ``--set KEY=VALUE`` overrides, then
validates; the resolved config (``model.model_dump``) is what a run folder stores and compares on resume.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fbnas.errors import FbnasError, key_name

M = TypeVar("M", bound="StrictModel")

_PROBLEMS = {
    "int_type": "must be an integer", "float_type": "must be a number", "bool_type": "must be true or false",
    "string_type": "must be a string", "list_type": "must be a list", "dict_type": "must be a mapping",
    "model_type": "must be a mapping", "model_attributes_type": "must be a mapping",
    "finite_number": "must be a finite number", "tuple_type": "must be a list", "none_required": "must be null",
}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        name = key_name(part)
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the (sub)model that holds ``loc[-1]`` (for 'unknown field; valid: ...')."""
    import typing

    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        ann = current.model_fields[part].annotation
        for _ in range(3):  # unwrap Optional[...] / list[...]
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                break
            ann = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0] if args else ann)
        current = ann
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items())
    return None


def describe_error(error: ValidationError, model: type[BaseModel] | None = None, source: str | None = None) -> str:
    """The first problem of ``error`` as one line: ``SOURCE: field.path: problem, got VALUE``."""
    e = error.errors()[0]
    loc, kind, ctx = tuple(e.get("loc", ())), e.get("type", ""), e.get("ctx") or {}
    where = _loc(loc)
    if kind == "extra_forbidden":
        valid = _fields_at(model, loc) if model is not None else None
        problem = "unknown field" + (f"; valid: {', '.join(valid)}" if valid else "")
    elif kind == "missing":
        problem = "missing"
    else:
        if kind in _PROBLEMS:
            problem = _PROBLEMS[kind]
        elif kind == "literal_error":
            problem = f"must be one of {ctx.get('expected', '')}"
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
            bound = next(iter(ctx.values()))
            problem = f"must be {op} {bound:g}" if isinstance(bound, (int, float)) else f"must be {op} {bound}"
        else:
            problem = str(e.get("msg", kind)).removeprefix("Value error, ")
            rel = re.match(r"^([A-Za-z_][\w.]*): (.*)$", problem)
            if kind == "value_error" and rel:  # a model validator names a field relative to its model
                where = f"{where}.{rel.group(1)}" if where else rel.group(1)
                problem = rel.group(2)
        if "input" in e and kind not in ("value_error", "assertion_error"):
            problem += f", got {e['input']!r}"
    head = f"{source}: {where}" if source else f"field {where!r}"
    return f"{head}: {problem}" if where else f"{source or 'config'}: {problem}"


class _OneLineErrors(type(BaseModel)):  # pydantic's model metaclass
    """``Model(...)`` raises the model's one-line ``error_class`` instead of a multi-line ValidationError (nested
    models are validated without this call, so their errors keep their location)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as e:
            raise cls.error_class(describe_error(e, cls)) from None


class StrictModel(BaseModel, metaclass=_OneLineErrors):
    """Base of every config model; construction errors are one-line :attr:`error_class` exceptions."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True,
                              populate_by_name=True)
    error_class: ClassVar[type[FbnasError]] = FbnasError

    @classmethod
    def parse(cls: type[M], data: Any, source: str | None = None) -> M:
        """Validate ``data`` (a mapping); errors name ``source`` and the field."""
        if not isinstance(data, dict):
            where = f"{source}: " if source else ""
            raise cls.error_class(f"{where}must be a mapping of fields, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise cls.error_class(describe_error(e, cls, source)) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def replace(self: M, **changes: Any) -> M:
        """A validated copy with ``changes`` applied; ``None`` values are ignored."""
        data = {**self.model_dump(by_alias=True), **{k: v for k, v in changes.items() if v is not None}}
        return type(self).parse(data)


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in recursively (mappings merge, other values replace)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> dict:
    """``a.b.c=VALUE`` (VALUE parsed as YAML) -> ``{"a": {"b": {"c": VALUE}}}``."""
    import yaml

    from fbnas.io import load_yaml

    if "=" not in text:
        raise FbnasError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. loss.form=none")
    key, raw = text.split("=", 1)
    try:
        value = load_yaml(raw)
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    if not all(parts):
        raise FbnasError(f"--set {text!r}: empty part in the key {key!r}")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file that must hold a mapping; every problem is one line naming the file."""
    import yaml

    from fbnas.io import load_yaml

    path = Path(path)
    if path.is_dir():
        raise FbnasError(f"{path}: is a folder, expected a YAML config file")
    if not path.exists():
        raise FbnasError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FbnasError(f"{path}: not a text file (expected YAML)") from None
    except OSError as e:
        raise FbnasError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        first = f"{getattr(e, 'problem', None) or str(e).splitlines()[0]}"
        if mark is not None:
            first += f" (line {mark.line + 1}, column {mark.column + 1})"
        raise FbnasError(f"{path}: not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FbnasError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    return data


def resolve_config(path: str | Path, preset: str | None = None, overrides: Sequence[str] = ()) -> dict:
    """The file's mapping with ``presets[preset]`` and the ``--set`` overrides merged in (not validated)."""
    data = read_yaml_mapping(path)
    presets = data.pop("presets", {}) or {}
    if not isinstance(presets, dict):
        raise FbnasError(f"{path}: presets: must be a mapping of preset names to overrides")
    if preset is not None:
        if preset not in presets:
            raise FbnasError(f"{path}: presets.{preset}: no such preset; valid: {', '.join(sorted(presets)) or 'none'}")
        if not isinstance(presets[preset], dict):
            raise FbnasError(f"{path}: presets.{preset}: must be a mapping")
        data = deep_merge(data, presets[preset])
    for text in overrides:
        data = deep_merge(data, parse_override(text))
    return data


def load_config(path: str | Path, model: type[M], preset: str | None = None, overrides: Sequence[str] = ()) -> M:
    """defaults (the model's) <- YAML file <- ``presets[preset]`` <- ``--set`` overrides, validated."""
    return model.parse(resolve_config(path, preset, overrides), str(path))
