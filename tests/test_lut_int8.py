"""int8 latency tables: the dtype is part of the block signature and of the device, so int8 rows never stand in
for fp32 ones (and back); an int8 build times each block quantized alone (Q/DQ boundaries) in onnxruntime;
`lut show` flags blocks that are slower in int8; the correction fitted at build time from the reference
networks is stored and used by predict and validate."""

from __future__ import annotations

import json

import onnx
import pytest
from cli_contract import assert_one_line_error, cli

from fbnas.arch.spec import ArchSpec
from fbnas.errors import FbnasError
from fbnas.lut import LatencyTable, build_table, needed_entries
from fbnas.lut import correction as corr
from fbnas.lut import predict as predict_module
from fbnas.lut import target_script as ts
from fbnas.lut import validate as validate_module
from fbnas.lut.measure import fingerprint, this_device
from fbnas.lut.signature import spec_entries, with_dtype
from fbnas.lut.store import LutStore, device_of, hardware_of
from fbnas.search.config import SearchConfig
from fbnas.space import space_from_dict

SPEC = {"name": "t", "input_size": 16, "in_channels": 1,
        "stages": [[["conv_k3", 8, 2, 1]], [["ir_k3", 8, 1, 1, {"e": 3}]], [["ir_k5", 16, 2, 1, {"e": 6}]]]}
STAT = "cpu_median_cold"
SPACE = {
    "name": "tiny", "input_size": 16, "in_channels": 1, "basic_args": {"width_divisor": 8, "act": "relu"},
    "candidates": {"c": {"k3_e1": ["ir_k3", {"e": 1}], "k5_e3": ["ir_k5", {"e": 3}], "skip": ["skip", {}]},
                   "d": {"k3_e3": ["ir_k3", {"e": 3}], "k3_e6": ["ir", {"k": 3, "e": 6}]}},
    "stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": 8, "s": 1, "n": 2},
               {"search": "d", "c": 16, "s": 2, "n": 1}, {"fixed": ["conv_k1", 32, 1, 1]}],
}


def _put(path, entries, ms, dtype, backend="onnxruntime"):
    with LutStore(path, create=True) as store:
        store.put([{"key": e.key, "value_ms": ms(e) if callable(ms) else ms, "spread_ms": 0.01, "samples": 5,
                    "block": e.desc} for e in entries], backend, 1, fingerprint(backend, 1, STAT, dtype), STAT)
    return path


def test_the_dtype_enters_the_signature_and_the_device():
    spec = ArchSpec.from_dict(SPEC)
    fp32, int8 = spec_entries(spec, 10), spec_entries(spec, 10, dtype="int8")
    assert [e.name for e in fp32] == [e.name for e in int8]
    assert not {e.key for e in fp32} & {e.key for e in int8}  # every block keyed apart
    assert all(e.desc["dtype"] == "int8" for e in int8)
    assert [with_dtype(e.desc, "float32").key for e in int8] == [e.key for e in fp32]
    d32, d8 = device_of(fingerprint("onnxruntime", 1, STAT)), device_of(fingerprint("onnxruntime", 1, STAT, "int8"))
    assert d8 != d32 and hardware_of(d8) == d32 == this_device() and d8 == this_device("int8")


def test_int8_rows_never_stand_in_for_fp32_ones(tmp_path, capsys):
    spec = ArchSpec.from_dict(SPEC)
    db = _put(tmp_path / "t.lut", needed_entries(specs=[spec], num_classes=10, dtype="int8"), 0.5, "int8")
    assert LatencyTable(db, "onnxruntime", dtype="int8").predict(spec).total_ms == pytest.approx(2.0)
    with pytest.raises(FbnasError, match="no onnxruntime 1-thread cpu_median_cold latency for block stem"):
        LatencyTable(db, "onnxruntime").predict(spec)
    spec_file = tmp_path / "t.json"
    spec_file.write_text(json.dumps(SPEC))
    rc, _, err = cli(["lut", "predict", spec_file, "--db", db, "--backend", "onnxruntime", "--num-classes", 10], capsys)
    assert_one_line_error(rc, err, "no onnxruntime 1-thread", "--backend onnxruntime --threads 1 --db")
    # and the other way round: fp32 rows do not fill an int8 prediction (the hint names --dtype int8)
    db2 = _put(tmp_path / "f.lut", needed_entries(specs=[spec], num_classes=10), 0.5, "float32")
    rc, _, err = cli(["lut", "predict", spec_file, "--db", db2, "--backend", "onnxruntime", "--dtype", "int8",
                      "--num-classes", 10], capsys)
    assert_one_line_error(rc, err, "no onnxruntime 1-thread", "--dtype int8")
    rc, _, err = cli(["lut", "build", "--arch", spec_file, "--db", tmp_path / "x.lut", "--dtype", "int8"], capsys)
    assert_one_line_error(rc, err, "dtype int8 is measured in onnxruntime")
    assert not (tmp_path / "x.lut").exists()


def test_an_int8_build_times_each_block_quantized_alone(tmp_path, monkeypatch):
    seen: list[set[str]] = []
    real = ts.make_session

    def spy(model, threads):
        seen.append({n.op_type for n in onnx.load_from_string(model).graph.node})
        return real(model, threads)

    monkeypatch.setattr(ts, "make_session", spy)
    db = tmp_path / "q.lut"
    res = build_table(db, specs=[ArchSpec.from_dict(SPEC)], backend="onnxruntime", dtype="int8", num_classes=10,
                      progress=False, rounds=1)
    assert res["measured"] == 4 and res["dtype"] == "int8"
    assert len(seen) == 4 and all({"QuantizeLinear", "DequantizeLinear"} <= ops for ops in seen)
    with LutStore(db) as store:
        rows = store.rows()
    assert {r["device"] for r in rows} == {this_device("int8")} and all(r["block"]["dtype"] == "int8" for r in rows)


def test_show_flags_blocks_slower_in_int8(tmp_path, capsys):
    spec = ArchSpec.from_dict(SPEC)
    db = _put(tmp_path / "t.lut", needed_entries(specs=[spec], num_classes=10), 0.5, "float32")
    _put(db, needed_entries(specs=[spec], num_classes=10, dtype="int8"),
         lambda e: 0.9 if e.family == "ir" and e.desc["params"]["k"] == 5 else 0.2, "int8")
    rc, out, _ = cli(["lut", "show", "--db", db], capsys)
    assert rc == 0 and "int8 vs fp32: 1 of 4 blocks measured in both are slower in int8" in out
    assert sorted(ln.split()[1] for ln in out.splitlines() if ln.startswith("onnxruntime ")) == ["float32", "int8"]
    assert "ir k=5 e=6" in out and "1.8" in out
    rc, out, _ = cli(["lut", "show", "--db", db, "--format", "json"], capsys)
    shown = json.loads(out)
    assert shown["int8_compared"] == 4 and [s["ratio"] for s in shown["int8_slower_than_fp32"]] == [1.8]


def test_the_build_time_correction_is_stored_and_used(tmp_path, monkeypatch, capsys):
    """Fake timings: blocks cost what their desc says, whole networks 0.4 ms + 1.5 x their plain sum. The build
    fits the correction on its 6 reference networks and stores it; predict and validate use it untold."""
    space = space_from_dict(SPACE, "tiny")

    def block_ms(desc):
        return 0.02 * (1 + desc["cout"] // 8) * (1 + desc["params"].get("e", 1)) if desc["family"] != "skip" else 0.01

    truth: dict[str, float] = {}
    for e in needed_entries(space, num_classes=10):
        truth[e.key] = block_ms(e.desc)

    def net_ms(arch) -> float:
        return 0.4 + 1.5 * sum(truth[e.key] for e in spec_entries(arch, 10))

    for s, ref in zip(predict_module.reference_samples(space), predict_module.reference_entries(space, 10),
                      strict=True):
        truth[ref.key] = net_ms(space.build(s).arch)
    monkeypatch.setattr(ts, "measure_all", lambda fns, **kw: {k: {"value_ms": truth[k], "spread_ms": 0.0,
                                                                    "samples": 3} for k in fns})
    db = tmp_path / "c.lut"
    res = build_table(db, space=space, num_classes=10, progress=False)
    c = res["correction"]
    assert c["source"] == "build" and c["n_samples"] == 6 and c["fit_mape"] < 0.05 < c["plain_mape"]
    with LutStore(db) as store:
        assert store.get_correction("torch", 1, "contiguous", STAT, this_device())["source"] == "build"
    lut = LatencyTable(db, num_classes=10)
    arch = space.build(predict_module.sample_archs(space, 1, 5, 0)[0]).arch
    p = lut.predict(arch)
    assert p.corrected_ms == pytest.approx(corr.apply(lut.correction, p.by_type))
    assert abs(p.corrected_ms - net_ms(arch)) < 0.3 * abs(p.total_ms - net_ms(arch))

    def fake_networks(space_, samples, lut_, num_classes, rounds=15, anchors=()):
        ms = [net_ms(space_.build(s).arch) for s in samples]
        return validate_module.NetworkTimes(ms, ms, 1.0, 1.0)

    monkeypatch.setattr(validate_module, "measure_networks", fake_networks)
    out = validate_module.validate(lut, space, 8, num_classes=10)
    lut.close()
    assert out["correction"]["source"] == "build" and out["corrected"]["mape"] < 0.05 < out["mape"]
    # a correction fitted by `lut fit-correction` is kept by a later build
    with LutStore(db) as store:
        store.set_correction("torch", 1, "contiguous", {**c, "source": "fit-correction"}, STAT, this_device())
    assert build_table(db, space=space, num_classes=10, progress=False)["correction"]["source"] == "fit-correction"


def test_search_config_int8_needs_onnxruntime():
    assert SearchConfig.model_validate({"lut": {"path": "x.lut", "backend": "onnxruntime", "dtype": "int8"}}
                                       ).lut.dtype == "int8"
    with pytest.raises(ValueError, match="lut.dtype: int8 latency is measured in onnxruntime"):
        SearchConfig.model_validate({"lut": {"path": "x.lut", "dtype": "int8"}})


def test_an_int8_block_runs_in_integer_kernels(tmp_path):
    """A fresh-init block (equal folded biases, which the exporter shares through Identity nodes) must fuse into
    onnxruntime's integer kernels: no float Conv or Add left in the optimised graph."""
    import onnxruntime as ort

    from fbnas.export.quantize import quantize_onnx, random_calibration
    from fbnas.lut.measure import build_module, export_onnx

    spec = ArchSpec.from_dict({"name": "b", "input_size": 14, "in_channels": 24,
                               "stages": [[["ir_k3", 24, 1, 1, {"e": 1}]]]})
    entry = spec_entries(spec, 10)[0]
    data = export_onnx(build_module(entry.desc), [1, 24, 14, 14])
    assert "Identity" in {n.op_type for n in onnx.load_from_string(data).graph.node}  # the case this is about
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(quantize_onnx(data, random_calibration([1, 24, 14, 14], 4)), opts,
                         providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("QLinearConv") == 2 and "QLinearAdd" in ops and "Conv" not in ops and "Add" not in ops
