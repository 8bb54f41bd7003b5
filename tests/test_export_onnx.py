"""Checked ONNX/TorchScript export: zoo models in onnxruntime, trained checkpoints, and failures writing nothing."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import fbnas
from fbnas.errors import FbnasError
from fbnas.export import calibrate_untrained, export_model, load_source
from fbnas.nn.model import build_model

FBNAS = str(Path(sys.executable).parent / "fbnas")
SMALL_SPEC = {
    "name": "tiny_fmnist", "input_size": 28, "in_channels": 1,
    "basic_args": {"width_divisor": 8, "act": "relu"},
    "stages": [[["conv_k3", 16, 2, 1]], [["ir_k3_se", 24, 2, 1, {"e": 3}], ["ir_k5", 24, 1, 1, {"e": 2}]],
               [["ir_k3_g2", 32, 2, 1, {"e": 4, "pwl_groups": 2}]]],
    "head": {"dropout": 0.1},
}


def make_checkpoint(folder: Path, ema: bool = True, num_classes: int = 10) -> Path:
    """A training checkpoint as fbnas train writes it (arch, num_classes, model, ema), with 'trained' weights."""
    spec = fbnas.ArchSpec.from_dict(SMALL_SPEC)
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = build_model(spec, num_classes)
        calibrate_untrained(model, (1, 1, 28, 28), seed=seed)
        states.append(model.state_dict())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "checkpoint.pt"
    torch.save({"arch": spec.to_dict(), "num_classes": num_classes, "model": states[0],
                "ema": states[1] if ema else None, "epoch": 3}, path)
    return path


def ort_run(path: Path, x: torch.Tensor) -> torch.Tensor:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(np.asarray(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]))


@pytest.mark.parametrize("name,size", [("fbnet_a", 64), ("fbnet_v2_f1", 64), ("fbnet_v3_a", 64)])
def test_zoo_onnx_matches_pytorch_in_onnxruntime(name: str, size: int, tmp_path: Path) -> None:
    src = load_source(name)
    calibrate_untrained(src.model, (1, 3, size, size))
    out = tmp_path / f"{name}.onnx"
    result = export_model(src.model, out, "onnx", (1, 3, size, size))
    assert result.path == str(out) and result.max_abs_diff < 1e-3 and result.batchnorm_left == 0
    graph = onnx.load(str(out)).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    # independently of export_model's own check: a new batch size through the dynamic axis, unfolded reference
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = src.model(x)
    got = ort_run(out, x)
    assert got.shape == (3, 1000)
    assert ref.abs().max() > 0.05  # a meaningful comparison, not zeros against zeros
    assert float((got - ref).abs().max()) < 1e-3
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left


def test_torchscript_export_matches(tmp_path: Path) -> None:
    src = load_source("fbnet_a")
    calibrate_untrained(src.model, (1, 3, 48, 48))
    out = tmp_path / "a.pt"
    result = export_model(src.model, out, "torchscript", (1, 3, 48, 48))
    assert result.max_abs_diff < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(out))
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert float((loaded(x) - src.model(x)).abs().max()) < 1e-4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in src.model.modules())  # folding worked on a copy


def test_checkpoint_export_uses_trained_ema_weights(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "run")
    out = tmp_path / "deploy" / "net.onnx"
    res = subprocess.run([FBNAS, "export", str(tmp_path / "run"), "--format", "onnx", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "trained weights" in res.stdout and "input 1x1x28x28" in res.stdout and "max abs diff" in res.stdout
    state = torch.load(ckpt, weights_only=True)
    spec = fbnas.ArchSpec.from_dict(state["arch"])
    x = torch.randn(4, 1, 28, 28)
    outputs = {}
    for key in ("model", "ema"):
        model = build_model(spec, 10).eval()
        model.load_state_dict(state[key])
        with torch.no_grad():
            outputs[key] = model(x)
    got = ort_run(out, x)
    assert got.shape == (4, 10)
    assert float((got - outputs["ema"]).abs().max()) < 1e-4
    assert float((got - outputs["model"]).abs().max()) > 1e-2  # it really is the EMA, not the raw weights
    assert sorted(p.name for p in out.parent.iterdir()) == ["net.onnx"]


def test_checkpoint_without_ema_and_num_classes_mismatch(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "run", ema=False, num_classes=7)
    src = load_source(str(ckpt))
    assert src.trained and src.num_classes == 7 and src.spec.in_channels == 1
    state = torch.load(ckpt, weights_only=True)
    assert all(torch.equal(v, state["model"][k]) for k, v in src.model.state_dict().items())
    with pytest.raises(FbnasError, match="trained for 7 classes"):
        load_source(str(ckpt), num_classes=1000)


def test_failed_check_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    import fbnas.export.exporter as exporter

    src = load_source("fbnet_v2_f1")
    calibrate_untrained(src.model, (1, 3, 32, 32))
    real_run = exporter.run_onnx
    monkeypatch.setattr(exporter, "run_onnx", lambda data, x, threads=1: real_run(data, x, threads) + 0.01)
    out = tmp_path / "f1.onnx"
    with pytest.raises(FbnasError, match="exceeds the tolerance"):
        export_model(src.model, out, "onnx", (1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    import fbnas.io

    src = load_source("fbnet_v2_f1")

    def broken_replace(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fbnas.io.os, "replace", broken_replace)
    with pytest.raises(FbnasError, match="cannot write"):
        export_model(src.model, tmp_path / "f1.pt", "torchscript", (1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == []
