"""The LUT file: one SQLite database (WAL, busy timeout) safe for several writer processes.

Tables: ``meta`` (marks the file as an fbnas LUT, schema version), ``entries`` (one measured block per
key/backend/threads with its device fingerprint, median, spread, sample count, time and the block
description) and ``corrections`` (optional end-to-end corrections, see :mod:`fbnas.lut.correction`).
Every write is its own short transaction, so an interrupted build keeps what it measured.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError

FORMAT = "fbnas-lut"
SCHEMA_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT NOT NULL, backend TEXT NOT NULL, threads INTEGER NOT NULL, statistic TEXT NOT NULL,
    fingerprint TEXT NOT NULL, value_ms REAL NOT NULL, spread_ms REAL NOT NULL, samples INTEGER NOT NULL,
    measured_at TEXT NOT NULL, block TEXT NOT NULL, PRIMARY KEY (key, backend, threads, statistic));
CREATE TABLE IF NOT EXISTS corrections (
    backend TEXT NOT NULL, threads INTEGER NOT NULL, memory_format TEXT NOT NULL, statistic TEXT NOT NULL,
    params TEXT NOT NULL, fitted_at TEXT NOT NULL, PRIMARY KEY (backend, threads, memory_format, statistic));
"""


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def build_hint(path: str | Path) -> str:
    return f"fbnas lut build --space fbnet_v1 --input-size 224 --db {path}"


class LutStore:
    """Open (or with ``create``, make) an fbnas LUT; every problem is a one-line :class:`FbnasError`."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        self._check_file(create)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout=60000")
            tables = self._tables()
            if tables and "meta" not in tables:  # look before changing anything in someone else's database
                raise FbnasError(f"{self.path}: not an fbnas latency table (SQLite database without fbnas tables)")
            if not tables and not create:
                raise FbnasError(f"{self.path}: not an fbnas latency table (empty SQLite database)")
            self.conn.execute("PRAGMA journal_mode=WAL")
            if create:
                self._init_schema()
            self._check_meta()
        except sqlite3.DatabaseError as e:
            self._close_quietly()
            raise FbnasError(f"{self.path}: corrupt or unreadable latency table database ({e})") from None
        except FbnasError:
            self._close_quietly()
            raise

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
            raise FbnasError(f"{self.path}: corrupt or unreadable latency table database ({e})") from None

    # ---- entries -------------------------------------------------------------------------------
    def get(self, keys: Iterable[str], backend: str, threads: int,
            statistic: str = "median") -> dict[str, dict[str, Any]]:
        """Rows for the ``keys`` that exist (others are simply absent from the result)."""
        keys = list(dict.fromkeys(keys))

        def run() -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = ("SELECT key, value_ms, spread_ms, samples, measured_at, fingerprint, block FROM entries "
                     f"WHERE backend=? AND threads=? AND statistic=? AND key IN ({','.join('?' * len(chunk))})")
                for row in self.conn.execute(q, (backend, int(threads), statistic, *chunk)):
                    out[row[0]] = {"key": row[0], "value_ms": row[1], "spread_ms": row[2], "samples": row[3],
                                   "measured_at": row[4], "fingerprint": json.loads(row[5]),
                                   "block": json.loads(row[6])}
            return out

        return self._guard(run)

    def put(self, rows: Iterable[dict[str, Any]], backend: str, threads: int, fingerprint: dict[str, Any],
            statistic: str = "median") -> int:
        """Insert or replace measured rows (key, value_ms, spread_ms, samples, block) in one transaction."""
        rows = list(rows)
        fp = json.dumps(fingerprint, sort_keys=True)
        stamp = now_utc()

        def run() -> int:
            with self.transaction():
                for r in rows:
                    self.conn.execute(
                        "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?) "
                        "ON CONFLICT(key, backend, threads, statistic) DO "
                        "UPDATE SET fingerprint=excluded.fingerprint, value_ms=excluded.value_ms, "
                        "spread_ms=excluded.spread_ms, samples=excluded.samples, measured_at=excluded.measured_at, "
                        "block=excluded.block",
                        (r["key"], backend, int(threads), statistic, fp, float(r["value_ms"]), float(r["spread_ms"]),
                         int(r["samples"]), r.get("measured_at", stamp), json.dumps(r["block"], sort_keys=True)))
            return len(rows)

        return self._guard(run)

    def summary(self) -> list[dict[str, Any]]:
        """Entry counts per backend / threads / device."""

        def run() -> list[dict[str, Any]]:
            q = ("SELECT backend, threads, statistic, fingerprint, COUNT(*), SUM(value_ms), MIN(measured_at), "
                 "MAX(measured_at) FROM entries GROUP BY backend, threads, statistic, fingerprint "
                 "ORDER BY backend, threads, statistic")
            out = []
            for b, t, st, fp, n, total, first, last in self.conn.execute(q):
                f = json.loads(fp)
                out.append({"backend": b, "threads": t, "statistic": st, "cpu": f.get("cpu"), "entries": n,
                            "sum_ms": total,
                            "first": first, "last": last,
                            "versions": ", ".join(f"{k} {f[k]}" for k in ("torch", "onnxruntime") if k in f)})
            return out

        return self._guard(run)

    def rows(self, backend: str | None = None, threads: int | None = None,
             statistic: str | None = None) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            q = ("SELECT key, backend, threads, value_ms, spread_ms, samples, measured_at, block, statistic "
                 "FROM entries")
            cond, args = [], []
            if statistic is not None:
                cond.append("statistic=?")
                args.append(statistic)
            if backend is not None:
                cond.append("backend=?")
                args.append(backend)
            if threads is not None:
                cond.append("threads=?")
                args.append(int(threads))
            if cond:
                q += " WHERE " + " AND ".join(cond)
            return [{"key": r[0], "backend": r[1], "threads": r[2], "value_ms": r[3], "spread_ms": r[4],
                     "samples": r[5], "measured_at": r[6], "block": json.loads(r[7]), "statistic": r[8]}
                    for r in self.conn.execute(q + " ORDER BY key", args)]

        return self._guard(run)

    # ---- corrections ---------------------------------------------------------------------------
    def set_correction(self, backend: str, threads: int, memory_format: str, params: dict[str, Any],
                       statistic: str = "median") -> None:
        def run() -> None:
            with self.transaction():
                self.conn.execute("INSERT OR REPLACE INTO corrections VALUES (?,?,?,?,?,?)",
                                  (backend, int(threads), memory_format, statistic, json.dumps(params), now_utc()))

        self._guard(run)

    def get_correction(self, backend: str, threads: int, memory_format: str,
                       statistic: str = "median") -> dict[str, Any] | None:
        def run() -> dict[str, Any] | None:
            if "corrections" not in self._tables():
                return None
            row = self.conn.execute("SELECT params FROM corrections WHERE backend=? AND threads=? AND "
                                    "memory_format=? AND statistic=?",
                                    (backend, int(threads), memory_format, statistic)).fetchone()
            return json.loads(row[0]) if row else None

        return self._guard(run)
