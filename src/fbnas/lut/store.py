"""The LUT file: one SQLite database (WAL, busy timeout) safe for several writer processes.

Tables: ``meta`` (marks the file as an fbnas LUT, schema version), ``entries`` (one measured block per
key/backend/threads/statistic/device with its full fingerprint, value, spread, sample count, time and the
block description) and ``corrections`` (optional end-to-end corrections per device, see
:mod:`fbnas.lut.correction`). Every write is its own short transaction, so an interrupted build keeps what it
measured; rows of one device never replace another's.

**Device.** A row's ``device`` is :func:`device_of` its fingerprint: the CPU model and the machine
architecture. Backend, threads and statistic are key columns of their own; library versions (torch,
onnxruntime, Python) and the allocator setting are recorded in the fingerprint but do not make another device,
so an upgrade keeps a table usable while a different CPU does not.

Schema 2 added ``device`` to both keys; a schema-1 file is migrated when opened (read in place when the file
cannot be written).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError

FORMAT = "fbnas-lut"
SCHEMA_VERSION = 2
_SQLITE_HEADER = b"SQLite format 3\x00"

_ENTRIES = """entries (
    key TEXT NOT NULL, backend TEXT NOT NULL, threads INTEGER NOT NULL, statistic TEXT NOT NULL,
    device TEXT NOT NULL, fingerprint TEXT NOT NULL, value_ms REAL NOT NULL, spread_ms REAL NOT NULL,
    samples INTEGER NOT NULL, measured_at TEXT NOT NULL, block TEXT NOT NULL,
    PRIMARY KEY (key, backend, threads, statistic, device))"""
_CORRECTIONS = """corrections (
    backend TEXT NOT NULL, threads INTEGER NOT NULL, memory_format TEXT NOT NULL, statistic TEXT NOT NULL,
    device TEXT NOT NULL, params TEXT NOT NULL, fitted_at TEXT NOT NULL,
    PRIMARY KEY (backend, threads, memory_format, statistic, device))"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {_ENTRIES};
CREATE TABLE IF NOT EXISTS {_CORRECTIONS};
"""
_ROW_COLUMNS = "fingerprint, value_ms, spread_ms, samples, measured_at, block"  # after the key columns
# one row of ``entries`` written, or replacing the row of the same key, backend, threads, statistic and device
_UPSERT = ("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?) "
           "ON CONFLICT(key, backend, threads, statistic, device) DO "
           "UPDATE SET fingerprint=excluded.fingerprint, value_ms=excluded.value_ms, "
           "spread_ms=excluded.spread_ms, samples=excluded.samples, measured_at=excluded.measured_at, "
           "block=excluded.block")


INT8_MARK = " [int8]"


def device_of(fingerprint: Any) -> str:
    """What makes two rows the same device: CPU model and machine architecture (see the module docstring), and
    the arithmetic: int8 rows are a device of their own (``... [int8]``), so they never stand in for fp32 ones."""
    fp = fingerprint if isinstance(fingerprint, dict) else {}
    base = f"{fp.get('cpu') or 'unknown CPU'} ({fp.get('machine') or 'unknown machine'})"
    return base + INT8_MARK if fp.get("dtype") == "int8" else base


def hardware_of(device: str) -> str:
    """The CPU part of a device (an int8 device's fp32 twin)."""
    return device[:-len(INT8_MARK)] if device.endswith(INT8_MARK) else device


def device_tag(device: str) -> str:
    """A short stable name of a device (8 hex digits), what ``--allow-fingerprint`` takes besides the full one."""
    return hashlib.blake2b(device.encode("utf-8"), digest_size=4).hexdigest()


def describe_device(device: str) -> str:
    return f"{device!r} [fingerprint {device_tag(device)}]"


def _device_of_json(text: str) -> str:
    try:
        return device_of(json.loads(text))
    except (TypeError, ValueError):
        return device_of({})


def check_row(row: Any, where: str) -> None:
    """A row to store: key, a positive finite value_ms, a finite spread_ms >= 0, samples >= 1, a block mapping."""
    if not isinstance(row, dict) or not isinstance(row.get("key"), str) or not row["key"]:
        raise FbnasError(f"{where}: a row needs a 'key' string")
    key = row["key"]
    v, sp, n = row.get("value_ms"), row.get("spread_ms"), row.get("samples")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise FbnasError(f"{where}: row {key}: value_ms must be a finite number > 0, got {v!r}")
    if isinstance(sp, bool) or not isinstance(sp, (int, float)) or not math.isfinite(sp) or sp < 0:
        raise FbnasError(f"{where}: row {key}: spread_ms must be a finite number >= 0, got {sp!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise FbnasError(f"{where}: row {key}: samples must be an integer >= 1, got {n!r}")
    if not isinstance(row.get("block"), dict):
        raise FbnasError(f"{where}: row {key}: block must be a mapping")


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def build_hint(path: str | Path) -> str:
    return f"fbnas lut build --space fbnet_v1 --input-size 224 --db {path}"


class LutStore:
    """Open (or with ``create``, make) an fbnas LUT; every problem is a one-line :class:`FbnasError`."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        self._check_file(create)
        self.readonly = self.path.exists() and not os.access(self.path, os.W_OK)
        try:
            target = f"file:{self.path.resolve()}?mode=ro" if self.readonly else str(self.path)
            self.conn = sqlite3.connect(target, timeout=60.0, isolation_level=None, uri=self.readonly)
            self.conn.create_function("fbnas_device", 1, _device_of_json, deterministic=True)
            self.conn.execute("PRAGMA busy_timeout=60000")
            tables = self._tables()
            if tables and "meta" not in tables:  # look before changing anything in someone else's database
                raise FbnasError(f"{self.path}: not an fbnas latency table (SQLite database without fbnas tables)")
            if not tables and not create:
                raise FbnasError(f"{self.path}: not an fbnas latency table (empty SQLite database)")
            if not self.readonly:
                self._enter_wal()
            if create:
                self._init_schema()
            self._check_meta()
            if int(self.meta.get("schema_version", "0")) < SCHEMA_VERSION:
                self._upgrade()
        except sqlite3.DatabaseError as e:
            self._close_quietly()
            raise FbnasError(f"{self.path}: {_db_problem(e)}") from None
        except FbnasError:
            self._close_quietly()
            raise

    def _enter_wal(self, wait_s: float = 60.0) -> None:
        """Switch to WAL. SQLite answers this pragma "database is locked" at once, without its busy handler,
        while another process is switching the same new file, so wait here as busy_timeout would."""
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
                return
            except sqlite3.OperationalError as e:
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    # ---- opening -------------------------------------------------------------------------------
    def _check_file(self, create: bool) -> None:
        if self.path.is_dir():
            raise FbnasError(f"{self.path}: is a folder, expected an fbnas latency table file")
        if not self.path.exists():
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return
            raise FbnasError(f"{self.path}: latency table not found; build it with `{build_hint(self.path)}`")
        with open(self.path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
        if not head and create:
            return  # empty file (e.g. just created by a concurrent builder): initialise it
        if head != _SQLITE_HEADER:
            raise FbnasError(f"{self.path}: not an fbnas latency table (not an SQLite database)")

    def _init_schema(self) -> None:
        with self.transaction():
            for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                self.conn.execute(stmt)
            has_meta = self.conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0]
            n_other = self.conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type='table' "
                "AND name NOT IN ('meta', 'entries', 'corrections')").fetchone()[0]
            if not has_meta and n_other:
                raise FbnasError(f"{self.path}: not an fbnas latency table (an SQLite database of something else)")
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (now_utc(),))

    def _upgrade(self) -> None:
        """Schema 1 -> 2: the device column in both keys, from each row's stored fingerprint. A file that cannot
        be written is read through temporary views of the same shape instead (nothing on disk changes)."""
        if self.readonly:
            self.conn.execute(f"CREATE TEMP VIEW entries AS SELECT key, backend, threads, statistic, "
                              f"fbnas_device(fingerprint) AS device, {_ROW_COLUMNS} FROM main.entries")
            self.conn.execute("CREATE TEMP VIEW corrections AS SELECT backend, threads, memory_format, statistic, "
                              "'' AS device, params, fitted_at FROM main.corrections")
            return
        with self.transaction():
            version = self.conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if version is not None and int(version[0]) >= SCHEMA_VERSION:
                return  # another process upgraded it first
            self.conn.execute(f"CREATE TABLE entries_v2 {_ENTRIES[len('entries '):]}")
            self.conn.execute(f"INSERT INTO entries_v2 SELECT key, backend, threads, statistic, "
                              f"fbnas_device(fingerprint), {_ROW_COLUMNS} FROM entries")
            self.conn.execute("DROP TABLE entries")
            self.conn.execute("ALTER TABLE entries_v2 RENAME TO entries")
            self.conn.execute(f"CREATE TABLE corrections_v2 {_CORRECTIONS[len('corrections '):]}")
            if "corrections" in self._tables():
                for b, t, mf, st, params, at in self.conn.execute("SELECT * FROM corrections").fetchall():
                    devices = [r[0] for r in self.conn.execute(
                        "SELECT DISTINCT device FROM entries WHERE backend=? AND threads=? AND statistic=?",
                        (b, t, st))]
                    self.conn.execute("INSERT INTO corrections_v2 VALUES (?,?,?,?,?,?,?)",
                                      (b, t, mf, st, devices[0] if len(devices) == 1 else "", params, at))
                self.conn.execute("DROP TABLE corrections")
            self.conn.execute("ALTER TABLE corrections_v2 RENAME TO corrections")
            self.conn.execute("UPDATE meta SET value=? WHERE name='schema_version'", (str(SCHEMA_VERSION),))
        self.meta["schema_version"] = str(SCHEMA_VERSION)

    def _check_meta(self) -> None:
        tables = self._tables()
        if "meta" not in tables or "entries" not in tables:
            raise FbnasError(f"{self.path}: not an fbnas latency table (SQLite database without fbnas tables)")
        meta = dict(self.conn.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise FbnasError(f"{self.path}: not an fbnas latency table (meta.format is {meta.get('format')!r})")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise FbnasError(f"{self.path}: latency table schema {version} is newer than this fbnas "
                             f"(supports {SCHEMA_VERSION}); upgrade fbnas")
        self.meta = meta

    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self._close_quietly()

    def __enter__(self) -> LutStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- transactions --------------------------------------------------------------------------
    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> None:
            self.conn.execute("BEGIN IMMEDIATE")  # take the write lock now; busy_timeout waits for others

        def __exit__(self, exc_type: Any, *rest: Any) -> None:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def transaction(self) -> LutStore._Tx:
        return LutStore._Tx(self.conn)

    def _guard(self, fn, *args: Any) -> Any:
        try:
            return fn(*args)
        except sqlite3.DatabaseError as e:
            raise FbnasError(f"{self.path}: {_db_problem(e)}") from None

    # ---- entries -------------------------------------------------------------------------------
    def _select(self, keys: list[str], backend: str, threads: int, statistic: str, device: str | None
                ) -> list[dict[str, Any]]:
        out = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = ("SELECT key, value_ms, spread_ms, samples, measured_at, fingerprint, block, device FROM entries "
                 f"WHERE backend=? AND threads=? AND statistic=? AND key IN ({','.join('?' * len(chunk))})")
            args: list[Any] = [backend, int(threads), statistic, *chunk]
            if device is not None:
                q += " AND device=?"
                args.append(device)
            for row in self.conn.execute(q, args):
                out.append({"key": row[0], "value_ms": row[1], "spread_ms": row[2], "samples": row[3],
                            "measured_at": row[4], "fingerprint": json.loads(row[5]), "block": json.loads(row[6]),
                            "device": row[7]})
        return out

    def get(self, keys: Iterable[str], backend: str, threads: int, statistic: str = "median",
            device: str | None = None) -> dict[str, dict[str, Any]]:
        """Rows of ``device`` for the ``keys`` that exist (others are absent from the result). Without a device,
        a key that several devices measured is a one-line error."""
        keys = list(dict.fromkeys(keys))

        def run() -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for r in self._select(keys, backend, threads, statistic, device):
                if r["key"] in out:
                    raise FbnasError(f"{self.path}: entry {r['key']} has rows of several devices "
                                     f"({describe_device(out[r['key']]['device'])}, {describe_device(r['device'])}); "
                                     "name the device")
                out[r["key"]] = r
            return out

        return self._guard(run)

    def by_device(self, keys: Iterable[str], backend: str, threads: int,
                  statistic: str = "median") -> dict[str, dict[str, dict[str, Any]]]:
        """device -> {key: row} for the ``keys`` that exist."""
        keys = list(dict.fromkeys(keys))

        def run() -> dict[str, dict[str, dict[str, Any]]]:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for r in self._select(keys, backend, threads, statistic, None):
                out.setdefault(r["device"], {})[r["key"]] = r
            return out

        return self._guard(run)

    def devices(self, backend: str | None = None, threads: int | None = None,
                statistic: str | None = None) -> list[str]:
        """The devices with rows (for this backend / threads / statistic when given)."""
        return sorted({r["device"] for r in self.rows(backend, threads, statistic)})

    def put(self, rows: Iterable[dict[str, Any]], backend: str, threads: int, fingerprint: dict[str, Any],
            statistic: str = "median") -> int:
        """Insert or replace measured rows (key, value_ms, spread_ms, samples, block) of the device of
        ``fingerprint``, in one transaction; rows of other devices are never touched. Every row is checked first
        (a positive finite value, a finite spread): one bad row and nothing is written."""
        rows = list(rows)
        for r in rows:
            check_row(r, str(self.path))
        fp = json.dumps(fingerprint, sort_keys=True)
        device = device_of(fingerprint)
        stamp = now_utc()

        return self._upsert([(r["key"], backend, int(threads), statistic, device, fp, float(r["value_ms"]),
                              float(r["spread_ms"]), int(r["samples"]), r.get("measured_at", stamp),
                              json.dumps(r["block"], sort_keys=True)) for r in rows])

    def _upsert(self, values: list[tuple]) -> int:
        """Write whole ``entries`` rows in one transaction, each replacing the row of its key and device."""

        def run() -> int:
            with self.transaction():
                self.conn.executemany(_UPSERT, values)
            return len(values)

        return self._guard(run)

    def import_device(self, other: LutStore, device: str) -> int:
        """Copy every entry of ``device`` from ``other`` (a table measured on that device: a Ray node's) into this
        one, with its fingerprint and time, replacing this table's rows of that device for the same keys; rows of
        other devices are never touched. Returns how many rows were copied."""
        rows = other._guard(lambda: other.conn.execute(
            f"SELECT key, backend, threads, statistic, device, {_ROW_COLUMNS} FROM entries WHERE device=?",
            (device,)).fetchall())

        return self._upsert([tuple(r) for r in rows])

    def count(self) -> int:
        return int(self._guard(lambda: self.conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]))

    def summary(self) -> list[dict[str, Any]]:
        """Entry counts per backend / threads / statistic / device (and fingerprint: versions)."""

        def run() -> list[dict[str, Any]]:
            q = ("SELECT backend, threads, statistic, device, fingerprint, COUNT(*), SUM(value_ms), MIN(measured_at), "
                 "MAX(measured_at) FROM entries GROUP BY backend, threads, statistic, device, fingerprint "
                 "ORDER BY backend, threads, statistic, device")
            out = []
            for b, t, st, dev, fp, n, total, first, last in self.conn.execute(q):
                f = json.loads(fp)
                out.append({"backend": b, "threads": t, "statistic": st, "cpu": f.get("cpu"), "device": dev,
                            "dtype": "int8" if dev.endswith(INT8_MARK) else "float32",
                            "fingerprint": device_tag(dev), "entries": n, "sum_ms": total,
                            "first": first, "last": last,
                            "versions": ", ".join(f"{k} {f[k]}" for k in ("torch", "onnxruntime") if k in f)})
            return out

        return self._guard(run)

    def rows(self, backend: str | None = None, threads: int | None = None,
             statistic: str | None = None, device: str | None = None) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            q = ("SELECT key, backend, threads, value_ms, spread_ms, samples, measured_at, block, statistic, device "
                 "FROM entries")
            cond, args = [], []
            for column, value in (("statistic", statistic), ("backend", backend), ("device", device)):
                if value is not None:
                    cond.append(f"{column}=?")
                    args.append(value)
            if threads is not None:
                cond.append("threads=?")
                args.append(int(threads))
            if cond:
                q += " WHERE " + " AND ".join(cond)
            return [{"key": r[0], "backend": r[1], "threads": r[2], "value_ms": r[3], "spread_ms": r[4],
                     "samples": r[5], "measured_at": r[6], "block": json.loads(r[7]), "statistic": r[8],
                     "device": r[9]}
                    for r in self.conn.execute(q + " ORDER BY key, device", args)]

        return self._guard(run)

    # ---- corrections ---------------------------------------------------------------------------
    def set_correction(self, backend: str, threads: int, memory_format: str, params: dict[str, Any],
                       statistic: str = "median", device: str = "") -> None:
        def run() -> None:
            with self.transaction():
                self.conn.execute("INSERT OR REPLACE INTO corrections VALUES (?,?,?,?,?,?,?)",
                                  (backend, int(threads), memory_format, statistic, device, json.dumps(params),
                                   now_utc()))

        self._guard(run)

    def get_correction(self, backend: str, threads: int, memory_format: str,
                       statistic: str = "median", device: str | None = None) -> dict[str, Any] | None:
        """The correction fitted on ``device`` (corrections are per device, like the rows); without a device, the
        only one stored for this setting (None when there are several)."""
        def run() -> dict[str, Any] | None:
            if "corrections" not in self._tables():
                return None
            q = "SELECT params FROM corrections WHERE backend=? AND threads=? AND memory_format=? AND statistic=?"
            args: list[Any] = [backend, int(threads), memory_format, statistic]
            if device is not None:
                q += " AND device=?"
                args.append(device)
            found = self.conn.execute(q, args).fetchall()
            return json.loads(found[0][0]) if len(found) == 1 else None

        return self._guard(run)


def _db_problem(e: sqlite3.DatabaseError) -> str:
    """A database error in words: a full disk or a read-only file is not a corrupt table."""
    text = str(e)
    if "full" in text or "readonly" in text or "read-only" in text or "unable to open" in text:
        return f"cannot write the latency table ({text})"
    return f"corrupt or unreadable latency table database ({text})"
