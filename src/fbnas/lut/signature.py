"""Block signatures: the canonical key of a block at a given input, shared across layers and specs.

The key is built from the op *family* and its fully resolved parameters (never the alias name), so
``ir_k3`` and ``ir`` with ``k: 3`` land on one entry. Parameters that do not change the forward
computation at inference (weight init flags) are dropped so equal computations dedup.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from fbnas.arch.spec import ArchSpec, Block
from fbnas.cost.placement import Placed, place
from fbnas.nn.ops import resolve_op

DTYPE = "float32"
DTYPES = ("float32", "int8")  # int8: static PTQ in onnxruntime's QDQ format (fbnas.export.quantize)
# parameters that only change initialisation / training, never the eval forward pass
_INIT_ONLY = {"zero_last_bn_gamma"}
# families whose forward ignores some resolved parameters entirely
_IGNORED = {"skip": {"e", "bias", "less_se_channels", "act", "width_divisor"},
            "eesp_down": {"unused_act", "unused_reinf"}}  # parameters the forward pass never uses


@dataclass(frozen=True)
class Entry:
    """One LUT entry needed by a network: what to build and time, and where it sits in the net."""

    name: str  # position in the network: stem, stage2.block0, head, classifier
    key: str
    desc: dict[str, Any]  # everything needed to rebuild the module and its input (JSON-able)

    @property
    def family(self) -> str:
        return str(self.desc["family"])

    @property
    def label(self) -> str:
        return describe(self.desc)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def make_key(desc: dict[str, Any]) -> str:
    """Short stable key: family, shape summary and a hash of the canonical description."""
    digest = hashlib.sha1(_canonical(desc).encode()).hexdigest()[:16]
    return f"{desc['family']}-{desc['cin']}-{desc['cout']}-s{desc['stride']}-{desc['h']}x{desc['w']}-{digest}"


def describe(desc: dict[str, Any]) -> str:
    """Human one-liner for messages, e.g. ``ir k=5 e=6 16->24 s2 @112x112``."""
    p = desc.get("params", {})
    bits = [desc["family"]]
    for name in ("k", "e", "se", "pw_groups", "pwl_groups", "act"):
        always = name in ("k", "act") or (name == "e" and desc["family"] == "ir")
        if name in p and (always or p[name] not in (None, 1, 1.0)):
            bits.append(f"{name}={p[name]}")
    bits.append(f"{desc['cin']}->{desc['cout']} s{desc['stride']} @{desc['h']}x{desc['w']}")
    if desc.get("batch", 1) != 1:
        bits.append(f"b{desc['batch']}")
    if desc.get("memory_format") == "channels_last":
        bits.append("channels_last")
    return " ".join(bits)


def _clean_params(family: str, params: dict[str, Any]) -> dict[str, Any]:
    drop = _INIT_ONLY | _IGNORED.get(family, set())
    out = {k: v for k, v in params.items() if k not in drop}
    if family == "ir" and not out.get("se"):
        out.pop("less_se_channels", None)
    return out


def block_desc(block: Block, basic_args: dict[str, Any], h: int, w: int, batch: int,
               channels_last: bool, dtype: str = DTYPE) -> tuple[dict[str, Any], int, int]:
    """Description of ``block`` at input ``h x w`` and its output size."""
    family, params = resolve_op(block.op, block.kwargs, basic_args)
    _, ho, wo = family.shapes(block.in_channels, block.out_channels, block.stride, h, w, params)
    desc = {"kind": "block", "family": family.name, "params": _clean_params(family.name, params),
            "build_params": params, "cin": block.in_channels, "cout": block.out_channels,
            "stride": block.stride, "h": h, "w": w, "batch": batch, "dtype": dtype,
            "memory_format": "channels_last" if channels_last else "contiguous"}
    return desc, ho, wo


def classifier_desc(channels: int, num_classes: int, h: int, w: int, batch: int,
                    channels_last: bool, dtype: str = DTYPE) -> dict[str, Any]:
    """Pseudo-block: global pool + flatten + linear (dropout is identity in eval)."""
    return {"kind": "classifier", "family": "classifier", "params": {"num_classes": num_classes},
            "cin": channels, "cout": num_classes, "stride": 1, "h": h, "w": w, "batch": batch,
            "dtype": dtype, "memory_format": "channels_last" if channels_last else "contiguous"}


def entry_from_desc(name: str, desc: dict[str, Any]) -> Entry:
    keyed = {k: v for k, v in desc.items() if k != "build_params"}
    return Entry(name, make_key(keyed), desc)


def placed_entry(p: Placed, batch: int = 1, channels_last: bool = False, dtype: str = DTYPE) -> Entry:
    """The LUT entry of a placed block (or of the classifier); ``dtype`` is part of its key."""
    if p.block is None:
        return entry_from_desc("classifier", classifier_desc(p.channels, p.num_classes, p.h, p.w, batch,
                                                             channels_last, dtype))
    desc, _, _ = block_desc(p.block, p.basic_args, p.h, p.w, batch, channels_last, dtype)
    if desc["params"].get("reinf"):  # input reinforcement: the entry depends on the network's input image
        desc["image"] = list(p.image)
    return entry_from_desc(p.name, desc)


def spec_entries(spec: ArchSpec, num_classes: int = 1000, batch: int = 1, channels_last: bool = False,
                 dtype: str = DTYPE) -> list[Entry]:
    """Every LUT entry a network needs, in execution order (blocks, then the classifier)."""
    return [placed_entry(p, batch, channels_last, dtype) for p in place(spec, num_classes)]


def with_dtype(desc: dict[str, Any], dtype: str) -> Entry:
    """The entry of the same block in another dtype (e.g. an int8 row's fp32 counterpart)."""
    return entry_from_desc("block", {**desc, "dtype": dtype})


def network_entry(name: str, spec: ArchSpec, num_classes: int, batch: int = 1, channels_last: bool = False,
                  dtype: str = DTYPE) -> Entry:
    """A whole network as a table row: the build times a few of these beside the blocks, so a later
    end-to-end check can tell how much faster or slower the machine runs networks than during the build."""
    desc = {"kind": "network", "family": "network", "params": {"name": name}, "spec": spec.to_dict(),
            "num_classes": num_classes, "cin": spec.in_channels, "cout": num_classes, "stride": 0,
            "h": spec.input_size, "w": spec.input_size, "batch": batch, "dtype": dtype,
            "memory_format": "channels_last" if channels_last else "contiguous"}
    return entry_from_desc(name, desc)


def unique_entries(entries: list[Entry]) -> list[Entry]:
    seen: dict[str, Entry] = {}
    for e in entries:
        seen.setdefault(e.key, e)
    return list(seen.values())
