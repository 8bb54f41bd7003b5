"""Latency tables per device: predictions and searches use one device's rows (this machine's, or the one
--allow-fingerprint / lut.allow_fingerprint names, which the result records); mixed or foreign rows are one line
naming both fingerprints; import stores a target's rows beside, never over, another device's; non-positive or
non-finite latencies are refused; schema-1 tables are migrated; a failed build leaves no empty table."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
import yaml
from cli_contract import FAST_DNAS, assert_one_line_error, cli, snapshot

from fbnas.arch.spec import ArchSpec
from fbnas.errors import FbnasError
from fbnas.lut import LatencyTable, needed_entries
from fbnas.lut.measure import fingerprint, this_device
from fbnas.lut.store import SCHEMA_VERSION, LutStore, device_of, device_tag

SPEC = {"name": "t", "input_size": 16, "in_channels": 1,
        "stages": [[["conv_k3", 8, 2, 1]], [["ir_k3", 8, 1, 1, {"e": 3}]], [["ir_k5", 16, 2, 1, {"e": 6}]]]}
OTHER = {"cpu": "Imaginary RISC-V Core @ 1.0GHz", "machine": "riscv64", "backend": "torch", "threads": 1}
STAT = "cpu_median_cold"  # what 'auto' means for 1 thread


def _rows(entries, ms):
    return [{"key": e.key, "value_ms": ms, "spread_ms": 0.01, "samples": 5, "block": e.desc} for e in entries]


def _table(path, parts):
    """A table whose rows come from ``parts``: [(fingerprint, entries, ms)]."""
    with LutStore(path, create=True) as store:
        for fp, entries, ms in parts:
            store.put(_rows(entries, ms), "torch", 1, fp, STAT)
    return path


@pytest.fixture()
def entries():
    return needed_entries(specs=[ArchSpec.from_dict(SPEC)], num_classes=10)


@pytest.fixture()
def spec_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(SPEC))
    return path


HERE = fingerprint("torch", 1, STAT)


def test_device_is_cpu_and_machine_not_versions():
    assert device_of({**HERE, "torch": "9.9"}) == device_of(HERE) == this_device()
    assert device_of(OTHER) != device_of(HERE) and len(device_tag(device_of(OTHER))) == 8


def test_this_machines_table_predicts(tmp_path, entries, spec_file, capsys):
    db = _table(tmp_path / "t.lut", [(HERE, entries, 0.5)])
    rc, out, err = cli(["lut", "predict", spec_file, "--db", db, "--format", "json"], capsys)
    assert rc == 0, err
    assert json.loads(out)["total_ms"] == pytest.approx(0.5 * len(entries))


def test_a_foreign_table_is_refused_unless_its_fingerprint_is_allowed(tmp_path, entries, spec_file, capsys):
    db = _table(tmp_path / "t.lut", [(OTHER, entries, 2.0)])
    other, here = device_of(OTHER), this_device()
    rc, _, err = cli(["lut", "predict", spec_file, "--db", db], capsys)
    assert_one_line_error(rc, err, "were measured on another device", other, device_tag(other), here,
                          device_tag(here), f"--allow-fingerprint {device_tag(other)}")
    for allowed in (device_tag(other), other):  # the short fingerprint or the full name
        rc, out, err = cli(["lut", "predict", spec_file, "--db", db, "--format", "json", "--allow-fingerprint",
                            allowed], capsys)
        assert rc == 0, err
        assert json.loads(out)["total_ms"] == pytest.approx(2.0 * len(entries))
    rc, _, err = cli(["lut", "predict", spec_file, "--db", db, "--allow-fingerprint", "deadbeef"], capsys)
    assert_one_line_error(rc, err, "--allow-fingerprint deadbeef", "the table has", device_tag(other))


def test_a_table_with_rows_from_two_fingerprints_is_refused_by_predict(tmp_path, entries, spec_file, capsys):
    half = len(entries) // 2
    db = _table(tmp_path / "t.lut", [(HERE, entries[:half], 0.5), (OTHER, entries[half:], 2.0)])
    rc, _, err = cli(["lut", "predict", spec_file, "--db", db], capsys)
    assert_one_line_error(rc, err, "come from two devices", f"{half} of", device_tag(this_device()),
                          device_tag(device_of(OTHER)))
    with pytest.raises(FbnasError, match="come from two devices"):  # allowing the other device: still mixed
        LatencyTable(db, allow_fingerprint=device_tag(device_of(OTHER))).predict(SPEC)


def test_complete_rows_of_this_machine_are_used_beside_foreign_ones(tmp_path, entries):
    db = _table(tmp_path / "t.lut", [(HERE, entries, 0.5), (OTHER, entries, 2.0)])
    lut = LatencyTable(db)
    assert lut.predict(SPEC).total_ms == pytest.approx(0.5 * len(entries))
    assert lut.info()["device"] == this_device() and lut.info()["allowed_fingerprint"] is None
    lut.close()
    other = LatencyTable(db, allow_fingerprint=device_tag(device_of(OTHER)))
    assert other.predict(SPEC).total_ms == pytest.approx(2.0 * len(entries))
    other.close()


def _search_setup(tmp_path, parts_of):
    from fbnas.config import load_config
    from fbnas.search.dnas import Dnas, DnasConfig

    cfg_data = {**FAST_DNAS, "loss": {"cost": "latency", "form": "target", "target": 1.0},
                "lut": {"path": str(tmp_path / "s.lut"), "build": False}}
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg_data))
    space = Dnas().space(load_config(cfg_path, DnasConfig))
    _table(tmp_path / "s.lut", parts_of(needed_entries(space, num_classes=10)))
    return cfg_path


def test_a_table_with_rows_from_two_fingerprints_is_refused_by_search(tmp_path, capsys):
    cfg = _search_setup(tmp_path, lambda e: [(HERE, e[: len(e) // 2], 0.05), (OTHER, e[len(e) // 2:], 0.2)])
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(rc, err, "s.lut", "come from two devices", device_tag(this_device()),
                          device_tag(device_of(OTHER)), "lut.allow_fingerprint")
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_a_search_on_an_allowed_foreign_table_records_it(tmp_path, capsys):
    cfg = _search_setup(tmp_path, lambda e: [(OTHER, e, 0.1)])
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(rc, err, "were measured on another device")
    tag = device_tag(device_of(OTHER))
    rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", tmp_path / "o", "--overwrite", "--set",
                      f"lut.allow_fingerprint={tag}"], capsys)
    assert rc == 0, err
    lut = json.loads((tmp_path / "o" / "result.json").read_text())["lut"]
    assert lut["allowed_fingerprint"] == tag and lut["device"] == device_of(OTHER) and lut["fingerprint"] == tag


def _results_file(path, entries, fp, value=1.5, **row):
    from fbnas.lut.target_script import RESULTS_FORMAT

    results = [{"key": e.key, "value_ms": value, "spread_ms": 0.1, "samples": 5, "block": e.desc, **row}
               for e in entries]
    path.write_text(json.dumps({"format": RESULTS_FORMAT, "fingerprint": fp, "threads": 1, "results": results}))
    return path


def test_import_stores_a_targets_rows_beside_this_machines(tmp_path, entries, capsys):
    db = _table(tmp_path / "t.lut", [(HERE, entries, 0.5)])
    target = {**OTHER, "backend": "torch", "statistic": STAT}
    res = _results_file(tmp_path / "r.json", entries, target, 3.0)
    rc, out, err = cli(["lut", "import", "--db", db, res], capsys)
    assert rc == 0, err
    assert device_tag(device_of(target)) in out
    with LutStore(db) as store:
        by = store.by_device([e.key for e in entries], "torch", 1, STAT)
    assert {d: {r["value_ms"] for r in rows.values()} for d, rows in by.items()} == {
        this_device(): {0.5}, device_of(target): {3.0}}  # nothing of this machine was replaced
    assert LatencyTable(db).predict(SPEC).total_ms == pytest.approx(0.5 * len(entries))


@pytest.mark.parametrize("value,field", [(0, "value_ms"), (-1.0, "value_ms"), (math.nan, "value_ms"),
                                         (math.inf, "value_ms"), ("1", "value_ms")])
def test_import_refuses_non_positive_or_non_finite_latencies(tmp_path, entries, capsys, value, field):
    db = _table(tmp_path / "t.lut", [(HERE, entries, 0.5)])
    before = snapshot(tmp_path)
    res = _results_file(tmp_path / "r.json", entries, {**OTHER, "statistic": STAT}, value)
    rc, _, err = cli(["lut", "import", "--db", db, res], capsys)
    assert_one_line_error(rc, err, field, "must be a finite number > 0")
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "r.json"} == before


@pytest.mark.parametrize("row,needle", [({"value_ms": 0.0}, "value_ms"), ({"value_ms": -2.0}, "value_ms"),
                                        ({"value_ms": math.nan}, "value_ms"), ({"value_ms": True}, "value_ms"),
                                        ({"spread_ms": -0.1}, "spread_ms"), ({"spread_ms": math.inf}, "spread_ms"),
                                        ({"samples": 0}, "samples"), ({"block": "x"}, "block")])
def test_the_store_refuses_bad_rows_and_writes_nothing(tmp_path, entries, row, needle):
    db = tmp_path / "t.lut"
    good = _rows(entries, 0.5)
    with LutStore(db, create=True) as store:
        store.put(good[:1], "torch", 1, HERE, STAT)  # the valid control
        with pytest.raises(FbnasError, match=needle):
            store.put([*good[1:], {**good[0], **row}], "torch", 1, HERE, STAT)
        assert store.count() == 1


def test_a_measured_build_stores_positive_latencies(tmp_path, monkeypatch):
    import fbnas.lut.target_script as ts
    from fbnas.lut import build_table

    monkeypatch.setattr(ts, "measure_all", lambda fns, **kw: {k: {"value_ms": 0.0, "spread_ms": 0.0, "samples": 3}
                                                             for k in fns})
    with pytest.raises(FbnasError, match="value_ms must be a finite number > 0, got 0.0"):
        build_table(tmp_path / "t.lut", specs=[SPEC], num_classes=10, progress=False)
    assert not (tmp_path / "t.lut").exists()  # and the failed build left no empty table


def test_an_interrupted_build_leaves_no_empty_table_and_keeps_an_existing_one(tmp_path, entries, monkeypatch):
    import fbnas.lut.predict as predict

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "measure_entries", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict.build_table(tmp_path / "new.lut", specs=[SPEC], num_classes=10, progress=False)
    assert list(tmp_path.iterdir()) == []
    db = _table(tmp_path / "old.lut", [(HERE, entries[:2], 0.5)])
    with pytest.raises(KeyboardInterrupt):
        predict.build_table(db, specs=[SPEC], num_classes=10, progress=False)
    with LutStore(db) as store:
        assert store.count() == 2 and {r["value_ms"] for r in store.rows()} == {0.5}


V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (key TEXT NOT NULL, backend TEXT NOT NULL, threads INTEGER NOT NULL, statistic TEXT NOT NULL,
    fingerprint TEXT NOT NULL, value_ms REAL NOT NULL, spread_ms REAL NOT NULL, samples INTEGER NOT NULL,
    measured_at TEXT NOT NULL, block TEXT NOT NULL, PRIMARY KEY (key, backend, threads, statistic));
CREATE TABLE corrections (backend TEXT NOT NULL, threads INTEGER NOT NULL, memory_format TEXT NOT NULL,
    statistic TEXT NOT NULL, params TEXT NOT NULL, fitted_at TEXT NOT NULL,
    PRIMARY KEY (backend, threads, memory_format, statistic));
"""


def _v1_table(path, entries):
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "fbnas-lut"), ("schema_version", "1"),
                                                        ("created_at", "2026-01-01T00:00:00Z")])
    for r in _rows(entries, 0.5):
        conn.execute("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (r["key"], "torch", 1, STAT, json.dumps(HERE), 0.5, 0.01, 5, "2026-01-01T00:00:00Z",
                      json.dumps(r["block"])))
    conn.execute("INSERT INTO corrections VALUES (?,?,?,?,?,?)",
                 ("torch", 1, "contiguous", STAT, json.dumps({"overhead_ms": 0.1, "scales": {}}), "2026"))
    conn.commit()
    conn.close()
    return path


def test_a_schema_1_table_is_migrated_on_open(tmp_path, entries):
    db = _v1_table(tmp_path / "old.lut", entries)
    lut = LatencyTable(db)
    assert lut.predict(SPEC).total_ms == pytest.approx(0.5 * len(entries))
    assert lut.correction == {"overhead_ms": 0.1, "scales": {}}  # moved to this machine's device
    lut.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert {r[0] for r in conn.execute("SELECT DISTINCT device FROM entries")} == {this_device()}
    conn.close()
    with LutStore(db, create=True) as store:  # and a foreign device's rows now go beside them
        store.put(_rows(entries, 2.0), "torch", 1, OTHER, STAT)
        assert store.count() == 2 * len(entries)


def test_a_schema_1_table_that_cannot_be_written_is_read_in_place(tmp_path, entries, monkeypatch):
    import fbnas.lut.store as store_module

    db = _v1_table(tmp_path / "old.lut", entries)
    before = db.read_bytes()
    real = store_module.os.access
    monkeypatch.setattr(store_module.os, "access", lambda p, m: False if str(p) == str(db) else real(p, m))
    lut = LatencyTable(db)
    assert lut.predict(SPEC).total_ms == pytest.approx(0.5 * len(entries))
    lut.close()
    assert db.read_bytes() == before


def test_a_newer_schema_is_refused(tmp_path, entries):
    db = _table(tmp_path / "t.lut", [(HERE, entries, 0.5)])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value='99' WHERE name='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(FbnasError, match="schema 99 is newer"):
        LutStore(db)
