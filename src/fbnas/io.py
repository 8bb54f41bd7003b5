"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file behind.

Every write goes to ``.NAME.XXXXXXXX.tmp`` in the target's folder, is fsynced and renamed over the target;
:func:`remove_orphaned_temps` deletes what a killed process left of such temp files. JSON output never holds
NaN or infinity (not JSON): run files refuse them, reports may write ``null`` instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from fbnas.errors import FbnasError

TEMP_SUFFIX = ".tmp"
# what tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") creates: 8 random characters between them
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write via ``write(fileobj)`` to a temp file in the same folder, fsync it, then rename over ``path``.

    An OSError (disk full, permission) carries ``path`` as its filename, so the CLI names the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise _named(e, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _named(e, path) from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def _named(e: OSError, path: Path) -> OSError:
    if getattr(e, "filename", None) is None:
        e.filename = str(path)
    return e


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# ---- YAML ------------------------------------------------------------------------------------------
_YAML_LOADER: Any = None


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also reads YAML 1.2 floats such as ``1e6`` and ``2E-3`` as numbers (YAML 1.1,
    PyYAML's default, wants ``1.0e+6`` and reads ``1e6`` as a string)."""
    global _YAML_LOADER
    import yaml

    if _YAML_LOADER is None:
        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                     re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                     list("-+0123456789"))
        _YAML_LOADER = Loader
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a SafeLoader subclass


# ---- JSON without NaN --------------------------------------------------------------------------------
NonFinite = Literal["refuse", "null"]


def nonfinite_at(obj: Any, where: str = "") -> tuple[str, float] | None:
    """(location, value) of the first NaN or infinity in nested mappings / lists, or None when all are finite."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "value", obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = nonfinite_at(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = nonfinite_at(v, f"{where}[{i}]")
            if found:
                return found
    return None


def _nulled(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nulled(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nulled(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = 2, nonfinite: NonFinite = "refuse", source: str = "JSON output") -> str:
    """``obj`` as JSON text. ``nonfinite="refuse"``: a NaN or infinity is a one-line error naming ``source`` and
    where it sits; ``"null"``: written as null (an undefined statistic in a report)."""
    if nonfinite == "null":
        obj = _nulled(obj)
    else:
        found = nonfinite_at(obj)
        if found:
            raise FbnasError(f"{source}: refusing to write {found[1]} at {found[0]} (NaN and infinity are not JSON)")
    return json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2,
                      nonfinite: NonFinite = "refuse") -> Path:
    return atomic_write_text(path, to_json(obj, indent, nonfinite, str(path)) + "\n")


def jsonl_text(rows: list[dict], source: str = "JSON lines") -> str:
    """One JSON line per row; a non-finite number is refused like :func:`to_json` does."""
    return "".join(to_json(r, None, "refuse", source) + "\n" for r in rows)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and fsync; a torn last line is skipped by :func:`read_jsonl`."""
    line = to_json(record, None, "refuse", str(path)) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# ---- crash hygiene and output checks ----------------------------------------------------------------
def remove_orphaned_temps(folder: str | os.PathLike, subfolders: tuple[str, ...] = ()) -> list[Path]:
    """Delete the ``.NAME.XXXXXXXX.tmp`` files that a killed writer left in ``folder`` (and its ``subfolders``);
    returns what was removed. Only call it on a folder no other process writes to (a run folder being started
    or resumed)."""
    removed = []
    for d in (Path(folder), *(Path(folder) / s for s in subfolders)):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if _TEMP_NAME.match(p.name) and p.is_file():
                try:
                    p.unlink()
                    removed.append(p)
                except FileNotFoundError:
                    pass
    return removed


def check_output(path: str | os.PathLike, what: str, kind: Literal["file", "folder"] = "file") -> Path:
    """Check, before any work, that ``path`` can be written: a file output is not a folder (and a folder output
    not a file), no part of the path above it is a file, and the nearest existing folder is writable. Creates
    nothing; every problem is one line naming ``what`` (the option, e.g. ``--out``)."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise FbnasError(f"{what} {p}: is a folder, expected a file path")
    if kind == "folder" and p.exists() and not p.is_dir():
        raise FbnasError(f"{what} {p}: exists and is not a folder")
    if kind == "file" and p.exists() and not os.access(p, os.W_OK):
        raise FbnasError(f"{what} {p}: the file is not writable")
    start = p if kind == "folder" else p.parent
    existing = start
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise FbnasError(f"{what} {p}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FbnasError(f"{what} {p}: the folder {existing} is not writable")
    return p
