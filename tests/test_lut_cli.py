"""LUT through the CLI: export-ops -> target_script -> import round trip, predict, and every bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_lut_core import TINY_SPACE

FBNAS = [sys.executable, "-m", "fbnas.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FBNAS, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def assert_one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("fbnas: error:")
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    import yaml

    p = tmp_path_factory.mktemp("space") / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY_SPACE))
    return p


@pytest.fixture(scope="module")
def built_db(tmp_path_factory, space_file) -> Path:
    db = tmp_path_factory.mktemp("db") / "lut.db"
    res = run("lut", "build", "--space", str(space_file), "--input-size", "16", "--num-classes", "10", "--db",
              str(db), "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["measured"] == 8
    again = run("lut", "build", "--space", str(space_file), "--input-size", "16", "--num-classes", "10", "--db",
                str(db), "--format", "json")
    assert json.loads(again.stdout)["measured"] == 0
    return db


def test_export_ops_target_script_import_round_trip(tmp_path, space_file):
    out = tmp_path / "ops"
    res = run("lut", "export-ops", "--space", str(space_file), "--input-size", "16", "--num-classes", "10",
              "--out", str(out))
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["ops"]) == 8
    assert all((out / op["file"]).is_file() for op in manifest["ops"])
    results = tmp_path / "results.json"
    # the shipped script runs alone: copy it out of the package and run it from an unrelated folder
    script = out / "target_script.py"
    t = subprocess.run([sys.executable, str(script), str(out), "--threads", "1", "--out", str(results),
                        "--rounds", "2"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert t.returncode == 0, t.stderr
    data = json.loads(results.read_text())
    assert len(data["results"]) == 8 and all(r["value_ms"] > 0 for r in data["results"])
    db = tmp_path / "target.db"
    imp = run("lut", "import", "--db", str(db), str(results))
    assert imp.returncode == 0, imp.stderr
    # the imported table predicts a space child for backend onnxruntime
    spec = tmp_path / "child.json"
    from fbnas.space import space_from_dict

    space = space_from_dict(TINY_SPACE, "tiny", input_size=16)
    space.to_spec([1, 2, 0]).save(spec)
    pred = run("lut", "predict", str(spec), "--db", str(db), "--backend", "onnxruntime", "--format", "json")
    assert pred.returncode == 0, pred.stderr
    p = json.loads(pred.stdout)
    by_key = {r["key"]: r["value_ms"] for r in data["results"]}
    assert p["total_ms"] == pytest.approx(sum(by_key[b["key"]] for b in p["blocks"]))
    # a tampered results file is refused and leaves the DB as it was
    data["results"][0]["block"]["cin"] = 999
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert_one_line_error(run("lut", "import", "--db", str(db), str(bad)), "key does not match")


def test_predict_cli(built_db, tmp_path):
    from fbnas.space import space_from_dict

    space = space_from_dict(TINY_SPACE, "tiny", input_size=16)
    spec = tmp_path / "c.json"
    space.to_spec([0, 1, 1]).save(spec)
    res = run("lut", "predict", str(spec), "--db", str(built_db), "--format", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["blocks"]) == 6 and out["total_ms"] > 0


def test_unknown_backend(built_db):
    assert_one_line_error(run("lut", "predict", "fbnet_a", "--db", str(built_db), "--backend", "tvm"),
                          "unknown backend 'tvm'")
    assert_one_line_error(run("lut", "build", "--arch", "fbnet_a", "--db", str(built_db), "--backend", "tvm"),
                          "unknown backend")


def test_text_file_is_not_a_lut(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    assert_one_line_error(run("lut", "show", "--db", str(f)), "not an fbnas latency table")
    assert_one_line_error(run("lut", "build", "--arch", "fbnet_a", "--db", str(f)), "not an fbnas latency table")
    assert f.read_text() == "hello\n"


def test_other_sqlite_db_is_not_a_lut(tmp_path):
    f = tmp_path / "other.db"
    con = sqlite3.connect(f)
    con.execute("CREATE TABLE people (name TEXT)")
    con.execute("INSERT INTO people VALUES ('ada')")
    con.commit()
    con.close()
    assert_one_line_error(run("lut", "show", "--db", str(f)), "not an fbnas latency table")
    assert_one_line_error(run("lut", "build", "--arch", "fbnet_a", "--input-size", "16", "--db", str(f)),
                          "not an fbnas latency table")
    con = sqlite3.connect(f)
    assert con.execute("SELECT name FROM people").fetchall() == [("ada",)]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_missing_block_names_block_and_build_command(built_db):
    res = run("lut", "predict", "fbnet_a", "--db", str(built_db))
    assert_one_line_error(res, "block stem", "fbnas lut build --arch fbnet_a --input-size 224")


def test_missing_file(tmp_path):
    assert_one_line_error(run("lut", "show", "--db", str(tmp_path / "nope.db")), "not found", "fbnas lut build")


def test_corrupt_database(built_db, tmp_path):
    broken = tmp_path / "broken.db"
    raw = bytearray(built_db.read_bytes())
    assert len(raw) > 4096
    raw[100:len(raw)] = b"\xff" * (len(raw) - 100)  # keep the SQLite header, destroy the pages
    broken.write_bytes(bytes(raw))
    before = broken.read_bytes()
    assert_one_line_error(run("lut", "show", "--db", str(broken)), "broken.db")
    assert_one_line_error(run("lut", "predict", "fbnet_a", "--db", str(broken)), "broken.db")
    assert broken.read_bytes() == before


def test_fit_correction_then_validate_json_and_plot(built_db, space_file, tmp_path):
    common = ["--db", str(built_db), "--space", str(space_file), "--input-size", "16", "--num-classes", "10"]
    fit = run("lut", "fit-correction", *common, "--samples", "5", "--format", "json")
    assert fit.returncode == 0, fit.stderr
    params = json.loads(fit.stdout)
    assert params["n_samples"] == 5 and set(params["scales"]) >= {"ir_k3", "classifier"}
    plot = tmp_path / "scatter.png"
    res = run("lut", "validate", *common, "--samples", "6", "--seed", "3", "--format", "json", "--plot", str(plot))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for k in ("spearman", "pearson", "mape", "within_10pct"):
        assert k in out and k in out["corrected"]
    assert 0.0 <= out["within_10pct"] <= 1.0 and out["n"] == 6
    assert out["drift_compensated"] is True and set(out["raw"]["plain"]) == {"spearman", "pearson", "mape",
                                                                               "within_10pct"}
    assert all(x["measured_ms"] > 0 and x["raw_ms"] > 0 for x in out["samples"])
    assert out["level_factor"] > 0 and out["load_factor"] > 0  # the build stored reference networks
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # validation samples never include the architectures the correction was fitted on
    from fbnas.lut.store import LutStore

    with LutStore(built_db) as s:
        fitted = s.get_correction("torch", 1, "contiguous", "cpu_median_cold")["fit_samples"]
    assert fitted and not {tuple(c.values()) for c in fitted} & {tuple(x["sample"].values()) for x in out["samples"]}
    shown = run("lut", "show", "--db", str(built_db))
    assert shown.returncode == 0 and "correction torch/1/cpu_median_cold" in shown.stdout


def test_bad_statistic_and_threads(built_db):
    assert_one_line_error(run("lut", "predict", "fbnet_a", "--db", str(built_db), "--statistic", "mean"),
                          "unknown statistic 'mean'")
    assert_one_line_error(run("lut", "predict", "fbnet_a", "--db", str(built_db), "--statistic", "cpu_median",
                              "--threads", "2"), "needs --threads 1")
