"""LUT: signatures dedup, DB round trip, prediction vs layer matrix, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fbnas.arch.spec import ArchSpec
from fbnas.lut import LatencyTable, build_table, needed_entries, term_entries
from fbnas.lut.signature import spec_entries
from fbnas.lut.store import LutStore
from fbnas.space import space_from_dict

TINY_SPACE = {
    "name": "tiny", "input_size": 32, "in_channels": 3, "basic_args": {"width_divisor": 8, "act": "relu"},
    "candidates": {"c": {"k3_e1": ["ir_k3", {"e": 1}], "k5_e3": ["ir_k5", {"e": 3}], "skip": ["skip", {}]},
                   "d": {"k3_e3": ["ir_k3", {"e": 3}], "k3_e6": ["ir", {"k": 3, "e": 6}]}},
    "stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": 8, "s": 1, "n": 2},
               {"search": "d", "c": 16, "s": 2, "n": 1}, {"fixed": ["conv_k1", 32, 1, 1]}],
}


def tiny_space():
    return space_from_dict(TINY_SPACE, "tiny", input_size=16)


def spec_of(op: str, kwargs: dict, repeats: int = 1) -> ArchSpec:
    return ArchSpec.from_dict({"name": "t", "input_size": 16, "stages": [[["conv_k3", 8, 2, 1]],
                                                                       [[op, 8, 1, repeats, kwargs]]]})


def test_alias_and_family_share_a_key():
    a = spec_entries(spec_of("ir_k3", {"e": 3}))
    b = spec_entries(spec_of("ir", {"k": 3, "e": 3}))
    c = spec_entries(spec_of("ir", {"k": 5, "e": 3}))
    assert a[1].key == b[1].key
    assert a[1].key != c[1].key
    assert a[1].desc["family"] == "ir"


def test_same_block_at_two_positions_dedups():
    ents = spec_entries(spec_of("ir_k3", {"e": 3}), num_classes=10)
    names = [e.name for e in ents]
    assert names == ["stem", "stage1.block0", "classifier"]
    two = spec_entries(spec_of("ir_k3", {"e": 3}, repeats=2))
    assert two[1].key == two[2].key and two[1].name != two[2].name
    # different spatial size -> different key
    other = spec_entries(spec_of("ir_k3", {"e": 3}).copy(input_size=32))
    assert other[1].key != ents[1].key


def test_init_only_params_do_not_change_key():
    a = spec_entries(spec_of("ir_k3", {"e": 3}))
    b = spec_entries(spec_of("ir_k3", {"e": 3, "zero_last_bn_gamma": True}))
    assert a[1].key == b[1].key


def test_space_entries_shapes():
    space = tiny_space()
    terms = term_entries(space, num_classes=10)
    per_layer = [list(t.values()) for dims, t in terms if dims]
    fixed = [e for dims, t in terms if not dims for e in t.values()]
    assert [dims for dims, _ in terms if dims] == [(d,) for d in space.dim_names]
    assert [len(x) for x in per_layer] == space.num_choices()
    assert [e.name for e in fixed] == ["stem", "stage3.block0", "classifier"]
    # the two c-layers have identical inputs (8->8, s1), so they share all keys
    assert [e.key for e in per_layer[0]] == [e.key for e in per_layer[1]]
    assert len(needed_entries(space, num_classes=10)) == 3 + 2 + 3


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("lut") / "tiny.db"
    space = tiny_space()
    res = build_table(path, space=space, num_classes=10, progress=False)
    assert res["measured"] == 8 and res["skipped"] == 0
    return path, space


def test_build_is_incremental_and_force_remeasures(tiny_db):
    path, space = tiny_db
    assert build_table(path, space=space, num_classes=10, progress=False)["measured"] == 0
    spec = ArchSpec.from_dict({"name": "x", "input_size": 16, "stages": [[["conv_k3", 8, 2, 1]],
                                                                       [["ir_k5", 8, 1, 1, {"e": 6}]]]})
    other = path.parent / "other.db"
    assert build_table(other, specs=[spec], num_classes=10, progress=False)["measured"] == 3
    res = build_table(other, specs=[spec], num_classes=10, progress=False, force=True)
    assert res["measured"] == 3


def test_db_round_trip(tmp_path):
    db = tmp_path / "rt.db"
    block = {"kind": "block", "family": "ir", "cin": 8}
    with LutStore(db, create=True) as s:
        s.put([{"key": "k1", "value_ms": 1.25, "spread_ms": 0.05, "samples": 17, "block": block}],
              "torch", 1, {"cpu": "x"})
    with LutStore(db) as s:
        row = s.get(["k1", "missing"], "torch", 1)
        assert set(row) == {"k1"}
        r = row["k1"]
        assert (r["value_ms"], r["spread_ms"], r["samples"], r["block"], r["fingerprint"]) == \
            (1.25, 0.05, 17, block, {"cpu": "x"})
        assert s.get(["k1"], "torch", 2) == {}
        assert s.get(["k1"], "onnxruntime", 1) == {}


def test_predict_matches_the_cost_tables_for_one_hot(tiny_db):
    path, space = tiny_db
    lut = LatencyTable(path)
    cm = lut.cost_model(space)
    m = [table for _, table in cm.terms]
    assert [tuple(t.shape) for t in m] == [(3,), (3,), (2,)] and all(torch.isfinite(t).all() for t in m)
    for choices in ([0, 1, 0], [2, 2, 1], [1, 0, 1]):
        pred = lut.predict(space.to_spec(choices))
        assert len(pred.blocks) == 5 + 1
        matrix_sum = cm.fixed + sum(float(m[li][c]) for li, c in enumerate(choices))
        assert pred.total_ms == pytest.approx(matrix_sum, rel=1e-5)
        assert cm.of_choices(choices) == pytest.approx(matrix_sum, rel=1e-5)
        onehot = [torch.nn.functional.one_hot(torch.tensor(c), k).float()
                  for c, k in zip(choices, space.num_choices(), strict=True)]
        assert float(cm.expected(onehot)) == pytest.approx(matrix_sum, rel=1e-5)
        assert pred.total_ms == pytest.approx(sum(ms for _, _, ms in pred.blocks))
    # differentiable: gradient of the expectation w.r.t. the weights is the table row
    w = [torch.full((k,), 1.0 / k, requires_grad=True) for k in space.num_choices()]
    cm.expected(w).backward()
    assert torch.allclose(w[0].grad, m[0])
    lut.close()


def test_missing_block_error_names_block_and_command(tiny_db):
    from fbnas.errors import FbnasError

    path, space = tiny_db
    lut = LatencyTable(path)
    spec = ArchSpec.from_dict({"name": "x", "input_size": 16, "stages": [[["conv_k3", 8, 2, 1]],
                                                                       [["ir_k7", 8, 1, 1, {"e": 6}]]]})
    with pytest.raises(FbnasError) as ei:
        lut.predict(spec)
    msg = str(ei.value)
    assert "stage1.block0" in msg and "k=7" in msg and "fbnas lut build" in msg and str(path) in msg
    assert "\n" not in msg
    lut.close()


WRITER = textwrap.dedent("""
    import sys
    from fbnas.lut.store import LutStore
    db, tag = sys.argv[1], sys.argv[2]
    for i in range(60):
        with LutStore(db, create=True) as s:
            s.put([{"key": f"{tag}-{i}", "value_ms": i + 1, "spread_ms": 0.0, "samples": 1, "block": {"i": i}},
                   {"key": f"shared-{i}", "value_ms": i + 1, "spread_ms": 0.0, "samples": 1, "block": {"i": i}}],
                  "torch", 1, {"writer": tag})
""")


def test_two_concurrent_writer_processes(tmp_path):
    db = tmp_path / "conc.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(db), tag], stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with LutStore(db) as s:
        rows = s.rows("torch", 1)
    keys = {r["key"] for r in rows}
    assert len(keys) == 180
    assert all(f"a-{i}" in keys and f"b-{i}" in keys and f"shared-{i}" in keys for i in range(60))


class _LockedThenFree:
    """A connection whose WAL switch answers "database is locked" ``times`` times (what SQLite does, without
    calling its busy handler, while another process switches the same new file), then succeeds."""

    def __init__(self, times: int, message: str = "database is locked") -> None:
        self.times, self.message, self.calls = times, message, 0

    def execute(self, sql: str):
        assert sql == "PRAGMA journal_mode=WAL"
        self.calls += 1
        if self.calls <= self.times:
            raise sqlite3.OperationalError(self.message)
        return self

    def fetchall(self):
        return [("wal",)]


def test_wal_switch_waits_out_a_concurrent_switch(tmp_path):
    with LutStore(tmp_path / "w.db", create=True) as s:
        real = s.conn
        try:
            s.conn = _LockedThenFree(times=3)
            s._enter_wal(wait_s=5.0)
            assert s.conn.calls == 4
            s.conn = _LockedThenFree(times=10**6)  # negative control: a lock that never clears is reported
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                s._enter_wal(wait_s=0.05)
            s.conn = _LockedThenFree(times=1, message="disk I/O error")  # other errors are not retried
            with pytest.raises(sqlite3.OperationalError, match="disk"):
                s._enter_wal(wait_s=5.0)
            assert s.conn.calls == 1
        finally:
            s.conn = real  # the store closes its real connection, whatever failed above


def test_reference_networks_are_timed_with_new_blocks_only(tmp_path):
    """A build stores the space's reference networks beside its blocks (same rounds); a rebuild with nothing
    new leaves them alone; a table that lacks them gets only them."""
    from fbnas.lut.predict import reference_entries
    from fbnas.lut.store import LutStore

    space = tiny_space()
    path = tmp_path / "refs.db"
    res = build_table(path, space=space, num_classes=10, progress=False)
    refs = reference_entries(space, num_classes=10)
    assert res["measured"] == 8 and res["references"] == len(refs) >= 2
    with LutStore(path) as store:
        rows = {r["key"]: r for r in store.rows()}
    assert all(rows[e.key]["block"]["kind"] == "network" and rows[e.key]["value_ms"] > 0 for e in refs)
    first = {e.key: rows[e.key]["measured_at"] for e in refs}
    again = build_table(path, space=space, num_classes=10, progress=False)
    assert again["measured"] == 0 and again["references"] == 0
    with LutStore(path) as store:
        store.conn.execute("DELETE FROM entries WHERE key=?", (refs[0].key,))
        store.conn.commit()
    only_refs = build_table(path, space=space, num_classes=10, progress=False)
    assert only_refs["measured"] == 0 and only_refs["references"] == len(refs)
    with LutStore(path) as store:
        rows = {r["key"]: r for r in store.rows()}
    assert refs[0].key in rows and len(first) == len(refs)
