"""The model zoo: named arch specs shipped as JSON data, with their published costs.

FBNet (mobile-vision), GhostNet V1/V2, EfficientNet V1/V2 and ESPNet V1/V2 (seed 004's miniaturization
families). :data:`PUBLISHED` says, per model, what was published and how it was counted, so that
``fbnas models`` compares like with like and shows equality where the published number is an exact count.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from fbnas.arch.spec import ArchSpec, load_spec
from fbnas.errors import FbnasError, SpecError


@dataclass(frozen=True)
class Published:
    """A model's published cost, and the counting convention it was published with.

    ``macs_unit`` / ``params_unit`` is the resolution of the published number (1: an exact count; 1000: millions
    to 3 decimals). ``macs_with_pool``: the MACs also count one operation per element entering every global
    average pool (mobile-vision's counter). ``macs_with_fc``: the final classifier is included (ESPNetV2
    publishes MACs without it). ``params_all``: all trainable parameters (sum of numel), else conv/linear
    weights only (mobile-vision's model_info).
    """

    family: str
    macs: int | None
    params: int | None
    source: str
    macs_unit: int = 1
    params_unit: int = 1
    macs_with_pool: bool = False
    macs_with_fc: bool = True
    params_all: bool = True
    num_classes: int = 1000
    top1: float | None = None


def _mv(macs: int, params: int, top1: float, unit: int = 1) -> Published:
    return Published("fbnet", macs, params, "mobile-vision model_info", macs_unit=unit, params_unit=unit,
                     macs_with_pool=True, params_all=False, top1=top1)


def _s004(family: str, params: int | None, macs_m: float | None, macs_unit: int = 100_000, top1: float | None = None,
          **kw) -> Published:
    macs = None if macs_m is None else round(macs_m * 1e6)
    return Published(family, macs, params, "seed 004 table (official definitions)", macs_unit=macs_unit, top1=top1,
                     **kw)


PUBLISHED: dict[str, Published] = {
    # FBNetV1: only 3 decimals of mobile-vision's counts are available (shared/reference/published_numbers.md)
    "fbnet_a": _mv(244_526_000, 4_270_000, 73.30, unit=1000),
    "fbnet_b": _mv(291_102_000, 4_767_000, 74.54, unit=1000),
    "fbnet_c": _mv(378_233_000, 5_525_000, 75.25, unit=1000),
    # FBNetV2/V3: mobile-vision's model_info_fbnet_v2.json / model_info_fbnet_v3.json, full counts
    "fbnet_v2_f1": _mv(56_410_560, 5_999_408, 68.28), "fbnet_v2_f2": _mv(85_441_392, 5_999_408, 70.98),
    "fbnet_v2_f3": _mv(121_824_000, 6_899_504, 73.03), "fbnet_v2_f4": _mv(238_351_984, 6_994_824, 75.82),
    "fbnet_v2_l1": _mv(326_023_008, 8_496_520, 77.04), "fbnet_v2_l2": _mv(423_912_768, 8_496_520, 78.24),
    "fbnet_v3_a": _mv(356_598_280, 8_542_224, 79.57), "fbnet_v3_b": _mv(461_550_136, 8_542_224, 80.21),
    "fbnet_v3_c": _mv(556_969_904, 9_907_136, 80.83), "fbnet_v3_d": _mv(644_420_352, 10_237_552, 81.04),
    "fbnet_v3_e": _mv(762_046_336, 10_699_464, 81.25), "fbnet_v3_f": _mv(1_181_644_520, 13_803_072, 82.06),
    "fbnet_v3_g": _mv(2_129_656_384, 16_513_648, 82.79),
    # seed 004's families: params exact, MACs (conv + linear) to the table's resolution; top-1 from the
    # official READMEs / papers where the table gives one (shared/reference/published_numbers.md)
    "ghostnet_050": Published("ghostnet", None, None, "not published"),
    "ghostnet_100": _s004("ghostnet", 5_182_508, 141.2, top1=73.98),
    "ghostnet_130": _s004("ghostnet", 7_358_820, 227.0),
    "ghostnetv2_100": _s004("ghostnet", 6_156_908, 167.0, top1=75.3),
    "ghostnetv2_130": _s004("ghostnet", 8_960_404, 269.3),
    "ghostnetv2_160": _s004("ghostnet", 12_392_698, 398.6),
    "efficientnet_b0": _s004("efficientnet", 5_288_548, 385.8, top1=77.1),
    "efficientnet_b1": _s004("efficientnet", 7_794_184, 686.8),
    "efficientnet_b2": _s004("efficientnet", 9_109_994, 993.6),
    "efficientnet_b3": _s004("efficientnet", 12_233_232, 1827.1),
    "efficientnet_b4": _s004("efficientnet", 19_341_616, 4393.8),
    "efficientnet_b5": _s004("efficientnet", 30_389_784, 10266, macs_unit=1_000_000),
    "efficientnet_b6": _s004("efficientnet", 43_040_704, 19068, macs_unit=1_000_000),
    "efficientnet_b7": _s004("efficientnet", 66_347_960, 37746, macs_unit=1_000_000),
    "efficientnetv2_s": _s004("efficientnet", 21_458_488, 8365.6, top1=83.9),
    "espnetv2_s050": _s004("espnet", 1_241_332, 28.38, macs_unit=10_000, macs_with_fc=False, top1=57.7),
    "espnetv2_s100": _s004("espnet", 1_670_072, 85.72, macs_unit=10_000, macs_with_fc=False, top1=66.1),
    "espnetv2_s125": _s004("espnet", 1_965_440, 123.40, macs_unit=10_000, macs_with_fc=False, top1=67.9),
    "espnetv2_s150": _s004("espnet", 2_314_856, 168.61, macs_unit=10_000, macs_with_fc=False, top1=69.2),
    "espnetv2_s200": _s004("espnet", 3_498_136, 284.81, macs_unit=10_000, macs_with_fc=False, top1=72.1),
    "espnet_c": _s004("espnet", 349_449, None, num_classes=20),  # p = 2, q = 8, 20 Cityscapes classes
}


def zoo_names(family: str | None = None) -> list[str]:
    return [n for n, p in PUBLISHED.items() if family is None or p.family == family]


def zoo_families() -> list[str]:
    return list(dict.fromkeys(p.family for p in PUBLISHED.values()))


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
