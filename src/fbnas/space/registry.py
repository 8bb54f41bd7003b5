"""Named spaces shipped as YAML data in ``defs/`` (``kind: layerwise``, the default, ``kind: masking`` or
``kind: fpnas`` or ``kind: stagewise``), and :func:`load_space` for a name or a user's YAML file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fbnas.errors import SpecError
from fbnas.space.fpnas import FPNasSpace, parse_fpnas_space
from fbnas.space.layerwise import LayerwiseSpace, layerwise_from_dict
from fbnas.space.masking import MaskingSpace, parse_space
from fbnas.space.stagewise import StagewiseSpace, parse_stagewise

KINDS = ("layerwise", "masking", "fpnas", "stagewise")
AnySpace = LayerwiseSpace | MaskingSpace | FPNasSpace | StagewiseSpace


def space_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fbnas.space").joinpath("defs").iterdir()
                  if p.name.endswith(".yaml"))


def read_space_file(name_or_path: str | Path) -> tuple[Any, str]:
    """(the YAML mapping, its source name) of a shipped space name or a YAML path."""
    import yaml

    p = Path(str(name_or_path))
    if p.suffix in (".yaml", ".yml") or p.exists():
        if p.is_dir():
            raise SpecError(f"{p}: is a folder, expected a search-space YAML file")
        if not p.exists():
            raise SpecError(f"{p}: file not found")
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"{p}: cannot read the file ({type(e).__name__})") from None
    else:
        names = space_names()
        if str(name_or_path) not in names:
            raise SpecError(f"unknown search space {name_or_path!r}; valid: {', '.join(names)} or a YAML file")
        source = f"space:{name_or_path}"
        text = resources.files("fbnas.space").joinpath("defs", f"{name_or_path}.yaml").read_text("utf-8")
    from fbnas.io import load_yaml

    try:
        return load_yaml(text), source
    except yaml.YAMLError as e:
        raise SpecError(f"{source}: not valid YAML: {str(e).splitlines()[0]}") from None


def space_from_dict(data: Any, source: str = "space", input_size: int | None = None,
                    in_channels: int | None = None, width_multiplier: float | None = None,
                    strides: list[int] | None = None) -> AnySpace:
    """A space from its mapping; ``kind`` (default layerwise) picks the model."""
    kind = data.get("kind", "layerwise") if isinstance(data, dict) else "layerwise"
    if kind not in KINDS:
        raise SpecError(f"{source}: kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind in ("masking", "fpnas", "stagewise"):
        scaling = {"input_size": input_size, "in_channels": in_channels, "width_multiplier": width_multiplier,
                   "strides": strides}
        given = [k for k, v in scaling.items() if v is not None and not (k == "input_size" and
                                                                          v == data.get("input_size"))]
        if given:
            raise SpecError(f"{source}: a {kind} space is not rescaled ({', '.join(given)}); edit its options")
        parsers = {"masking": parse_space, "fpnas": parse_fpnas_space, "stagewise": parse_stagewise}
        return parsers[kind](data, source)
    return layerwise_from_dict(data, source, input_size, in_channels, width_multiplier, strides)


def load_space(name_or_path: str | Path, input_size: int | None = None, in_channels: int | None = None,
               width_multiplier: float | None = None, strides: list[int] | None = None,
               ) -> AnySpace:
    """Load a space by name (``fbnet_v1``) or YAML path; a layer-wise one scaled to ``input_size`` / width /
    strides (``strides`` gives every stage's stride; by default, an input smaller than the space's own size
    drops the earliest stride-2 stages)."""
    data, source = read_space_file(name_or_path)
    return space_from_dict(data, source, input_size, in_channels, width_multiplier, strides)
