"""Static int8 export (onnxruntime QDQ): runs in onnxruntime, agrees with fp32 within the calibrated tolerance,
and a badly calibrated model is caught (negative control)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import fbnas
from fbnas.cli import main
from fbnas.errors import FbnasError
from fbnas.export import INT8_TOLERANCE, calibrate_untrained, export_model
from fbnas.export import quantize as q
from fbnas.nn.model import build_model

SPEC = {
    "name": "tiny_fmnist", "input_size": 28, "in_channels": 1,
    "basic_args": {"width_divisor": 8, "act": "relu"},
    "stages": [[["conv_k3", 16, 2, 1]], [["ir_k3", 24, 2, 1, {"e": 3}], ["ir_k5", 24, 1, 1, {"e": 2}]],
               [["ir_k3_g2", 32, 2, 1, {"e": 4, "pwl_groups": 2}]]],
    "head": {"dropout": 0.1},
}
SHAPE = (1, 1, 28, 28)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model(fbnas.ArchSpec.from_dict(SPEC), 10)
    calibrate_untrained(m, SHAPE, seed=3)
    return m.eval()


def _run(path_or_bytes, x: np.ndarray) -> np.ndarray:
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_int8_export_runs_in_onnxruntime_and_agrees_with_fp32(model, tmp_path: Path) -> None:
    out = tmp_path / "tiny_int8.onnx"
    cal = q.random_calibration(SHAPE, 64, seed=0, batch=16)
    res = export_model(model, out, "onnx", SHAPE, quantize="int8", calibration=cal,
                       holdout=q.random_calibration(SHAPE, 16, seed=1, batch=16))
    assert res.dtype == "int8" and res.int8_rel_error is not None and res.fp32_onnx
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights  # conv weights stored as int8 ...
    inits = {t.name: t for t in graph.initializer}
    weight_scales = [inits[n.input[1]] for n in graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] in {w.name for w in int8_weights}]
    assert weight_scales and all(list(s.dims) == [inits[w].dims[0]] for s, w in  # one scale per output channel
                                 zip(weight_scales, [n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"
                                                     and n.input[0] in {w.name for w in int8_weights}], strict=True))
    # independently of the exporter's own check: a new input batch, int8 file vs the fp32 PyTorch model
    x = q.random_calibration(SHAPE, 8, seed=9, batch=8)[0]
    got = _run(out, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert got.shape == (8, 10) and np.abs(ref).max() > 0.01  # not zeros against zeros
    err = q.relative_error(got, ref)
    assert 0 < err <= INT8_TOLERANCE  # int8 differs from fp32 (it is quantized), but within the tolerance
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_badly_calibrated_int8_is_refused(model, tmp_path: Path) -> None:
    """Negative control: activation ranges calibrated 100x too small saturate every layer; the check catches it
    and nothing is written."""
    cal = [b * 0.01 for b in q.random_calibration(SHAPE, 32, seed=0, batch=16)]
    out = tmp_path / "bad.onnx"
    with pytest.raises(FbnasError, match="int8 check: .* exceeds the tolerance"):
        export_model(model, out, "onnx", SHAPE, quantize="int8", calibration=cal,
                     holdout=q.random_calibration(SHAPE, 16, seed=1, batch=16))
    assert list(tmp_path.iterdir()) == []


def test_int8_cli_errors(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "x.pt")
    assert main(["export", "fbnet_a", "--quantize", "int8", "--format", "torchscript", "--out", out]) == 2
    assert "--quantize int8 needs --format onnx" in capsys.readouterr().err
    assert main(["export", "fbnet_a", "--calibration", "random", "--out", out]) == 2
    assert "--calibration applies to --quantize int8 only" in capsys.readouterr().err
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(SPEC))
    assert main(["export", str(spec), "--quantize", "int8", "--calibration", "fashion-mnist",
                 "--out", str(tmp_path / "a.onnx")]) == 2  # 1000 classes by default
    err = capsys.readouterr().err
    assert "Fashion-MNIST needs 1 and 10" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.json"]
