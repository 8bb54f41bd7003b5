"""The FBNet model zoo: named arch specs shipped as JSON data, with their published costs."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fbnas.arch.spec import ArchSpec, load_spec
from fbnas.errors import FbnasError, SpecError

# (MACs in millions, params in millions) from mobile-vision's model_info (shared/reference/published_numbers.md)
PUBLISHED: dict[str, tuple[float, float]] = {
    "fbnet_a": (244.526, 4.270), "fbnet_b": (291.102, 4.767), "fbnet_c": (378.233, 5.525),
    "fbnet_v2_f1": (56.411, 5.999), "fbnet_v2_f2": (85.441, 5.999), "fbnet_v2_f3": (121.824, 6.900),
    "fbnet_v2_f4": (238.352, 6.995), "fbnet_v2_l1": (326.023, 8.497), "fbnet_v2_l2": (423.913, 8.497),
    "fbnet_v3_a": (356.598, 8.542), "fbnet_v3_b": (461.550, 8.542), "fbnet_v3_c": (556.970, 9.907),
    "fbnet_v3_d": (644.420, 10.238), "fbnet_v3_e": (762.046, 10.699), "fbnet_v3_f": (1181.645, 13.803),
    "fbnet_v3_g": (2129.656, 16.514),
}


def zoo_names() -> list[str]:
    return list(PUBLISHED)


@cache
def _zoo_spec_dict(name: str) -> dict:
    import json

    text = resources.files("fbnas.arch").joinpath("zoo_defs", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def get_spec(name: str) -> ArchSpec:
    if name not in PUBLISHED:
        import difflib

        close = difflib.get_close_matches(name, PUBLISHED, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SpecError(f"unknown model {name!r}{hint}; zoo models: {', '.join(PUBLISHED)}")
    return ArchSpec.from_dict(_zoo_spec_dict(name), source=f"zoo:{name}")


def resolve_arch(name_or_path: str | Path | ArchSpec | dict) -> ArchSpec:
    """A zoo name, a spec file (JSON/YAML, or a search's result.json), a training checkpoint (``*.pt`` or its
    run folder), a dict or an ArchSpec."""
    if isinstance(name_or_path, ArchSpec):
        return name_or_path
    if isinstance(name_or_path, dict):
        return ArchSpec.from_dict(name_or_path)
    s = str(name_or_path)
    if s in PUBLISHED:
        return get_spec(s)
    p = Path(s)
    if p.is_dir():
        from fbnas.runs import folder_checkpoint_or_result

        p = folder_checkpoint_or_result(p) or p
    if p.suffix == ".pt":
        return load_checkpoint_arch(p)[0]
    if p.is_dir():
        raise SpecError(f"{p}: a folder without result.json or checkpoint.pt, not an arch spec")
    if p.suffix in (".json", ".yaml", ".yml") or p.exists():
        return load_spec(p)
    return get_spec(s)  # raises a helpful unknown-model error


def load_checkpoint_arch(path: str | Path) -> tuple[ArchSpec, int | None]:
    """The spec and ``num_classes`` stored in a training checkpoint (``*.pt`` with an ``arch`` key)."""
    from fbnas.runs import load_checkpoint_file

    p = Path(path)
    try:
        state = load_checkpoint_file(p, "train")
    except FbnasError as e:
        raise SpecError(str(e)) from None
    if not isinstance(state.get("arch"), dict):
        raise SpecError(f"{p}: not an fbnas training checkpoint (no 'arch' spec)")
    num_classes = state.get("num_classes")
    return ArchSpec.from_dict(state["arch"], source=str(p)), int(num_classes) if num_classes is not None else None
