"""Targets that cannot run fbnas: export every needed block as ONNX + manifest; import measured results.

Flow: ``fbnas lut export-ops`` (host) -> ``python target_script.py DIR --out results.json`` (target, only
onnxruntime and numpy) -> ``fbnas lut import --db FILE results.json`` (host).
"""

from __future__ import annotations

import json
import math
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError
from fbnas.io import atomic_write_bytes, atomic_write_json
from fbnas.lut.measure import build_module, check_backend, export_onnx, input_shape
from fbnas.lut.signature import Entry, entry_from_desc
from fbnas.lut.store import LutStore, device_of, device_tag
from fbnas.lut.target_script import RESULTS_FORMAT

MANIFEST_FORMAT = "fbnas-lut-ops/1"


def export_ops(entries: list[Entry], out_dir: str | Path, progress: bool = True,
               statistic: str = "auto") -> dict[str, Any]:
    """Write ``NNNN_family.onnx`` per unique entry, manifest.json and a copy of target_script.py."""
    import sys

    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ops = []
    for i, e in enumerate(tqdm(entries, desc="export", file=sys.stderr, disable=not progress or not sys.stderr.isatty(),
                               leave=False)):
        fname = f"{i:04d}_{e.family}.onnx"
        shape = input_shape(e.desc)
        atomic_write_bytes(out / fname, export_onnx(build_module(e.desc), shape))
        ops.append({"key": e.key, "file": fname, "input_shape": shape, "name": e.name, "label": e.label,
                    "block": e.desc})
    script = resources.files("fbnas.lut").joinpath("target_script.py")
    with resources.as_file(script) as src:
        shutil.copyfile(src, out / "target_script.py")
    manifest = {"format": MANIFEST_FORMAT, "backend": "onnxruntime", "statistic": statistic, "ops": ops}
    atomic_write_json(out / "manifest.json", manifest, indent=1)
    return {"ops": len(ops), "dir": str(out)}


def _bad(path: Path, msg: str) -> FbnasError:
    return FbnasError(f"{path}: {msg}")


def read_results(path: str | Path) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
    """(fingerprint, threads, rows) of a target_script results file, every row checked."""
    path = Path(path)
    if not path.is_file():
        raise _bad(path, "results file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(path, f"not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise _bad(path, f"not a target_script results file (expected format {RESULTS_FORMAT!r})")
    fp, threads, results = data.get("fingerprint"), data.get("threads"), data.get("results")
    if not isinstance(fp, dict) or not isinstance(threads, int) or threads < 1 or not isinstance(results, list):
        raise _bad(path, "fields 'fingerprint' (mapping), 'threads' (>= 1) and 'results' (list) are required")
    rows = []
    for i, r in enumerate(results):
        where = f"results[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("block"), dict) or not isinstance(r.get("key"), str):
            raise _bad(path, f"{where}: needs 'key' and 'block'")
        for f, low in (("value_ms", "> 0"), ("spread_ms", ">= 0")):
            v = r.get(f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (
                    f == "value_ms" and v == 0):
                raise _bad(path, f"{where}.{f}: must be a finite number {low}, got {v!r}")
        if not isinstance(r.get("samples"), int) or r["samples"] < 1:
            raise _bad(path, f"{where}.samples: must be a positive integer")
        try:
            key = entry_from_desc("import", r["block"]).key
        except (KeyError, TypeError):
            raise _bad(path, f"{where}.block: not an fbnas block description") from None
        if key != r["key"]:
            raise _bad(path, f"{where}: key does not match its block description (file edited?)")
        rows.append({k: r[k] for k in ("key", "value_ms", "spread_ms", "samples", "block")}
                    | ({"measured_at": data["measured_at"]} if isinstance(data.get("measured_at"), str) else {}))
    return fp, threads, rows


def import_results(db: str | Path, results_path: str | Path) -> dict[str, Any]:
    fp, threads, rows = read_results(results_path)  # check everything before touching the DB
    backend = str(fp.get("backend", "onnxruntime"))
    statistic = str(fp.get("statistic", "median"))
    check_backend(backend, statistic=statistic)
    with LutStore(db, create=True) as store:
        n = store.put(rows, backend, threads, fp, statistic)  # under the target's device: no other device's rows
    device = device_of(fp)
    return {"imported": n, "backend": backend, "threads": threads, "cpu": fp.get("cpu"), "statistic": statistic,
            "device": device, "fingerprint": device_tag(device)}
