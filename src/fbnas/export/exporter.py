"""Export a model to ONNX or TorchScript, check the file against PyTorch, and write it atomically.

The file is built in memory, loaded back (onnxruntime on the CPU provider / ``torch.jit.load``) and compared
with the PyTorch model on a random input; only a file that passed is written (temp file in the same folder,
fsync, rename), so a failure never leaves a partial or unchecked file behind.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fbnas.errors import FbnasError
from fbnas.export.fold import count_batchnorm, fold_batchnorm

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass
class ExportResult:
    path: str | None  # None when nothing was written (check only)
    format: str
    input_shape: list[int]
    folded_pairs: int
    batchnorm_left: int
    fold_max_abs_diff: float  # folded vs unfolded PyTorch model
    max_abs_diff: float  # exported file vs the PyTorch model (check batch, random input)
    max_abs_output: float
    check_batch: int
    size_bytes: int
    opset: int | None
    dtype: str = "float32"  # int8: the written file is the static-PTQ QDQ model
    int8_rel_error: float | None = None  # int8: max |int8 - fp32| / max |fp32| on held-out calibration inputs
    calibration: str | None = None  # int8: what the ranges were calibrated on
    fp32_onnx: bytes | None = field(default=None, repr=False)  # int8: the checked fp32 model it was made from

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "fp32_onnx"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The legacy exporter and the tracer warn on every call; the numeric check is what matters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        yield


def onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    """ONNX via the legacy TorchScript exporter (``dynamo=False``), with a dynamic batch axis."""
    buf = io.BytesIO()
    with _quiet():
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return buf.getvalue()


def torchscript_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.jit.save(torch.jit.trace(model, (example,), check_trace=False), buf)
    return buf.getvalue()


def run_onnx(data: bytes, x: torch.Tensor, threads: int = 1) -> torch.Tensor:
    from fbnas.export.quantize import session

    sess = session(data, threads)
    return torch.from_numpy(np.asarray(sess.run(None, {INPUT_NAME: x.numpy()})[0]))


def run_torchscript(data: bytes, x: torch.Tensor) -> torch.Tensor:
    with _quiet():
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.no_grad():
        return loaded(x)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise FbnasError(f"exported model output shape {tuple(a.shape)} differs from PyTorch's {tuple(b.shape)}")
    return float((a.double() - b.double()).abs().max())


def _check(name: str, diff: float, scale: float, tolerance: float) -> None:
    """A diff is acceptable below ``tolerance`` times max(1, max |output|): float32 error grows with outputs."""
    if not math.isfinite(diff) or diff > tolerance * max(1.0, scale):
        raise FbnasError(f"{name}: max abs difference {diff:.3g} exceeds the tolerance {tolerance:g} "
                         f"(max |output| {scale:.3g}); nothing was written")


def check_format(fmt: str, quantize: str | None = None) -> None:
    """One line for a format or quantization that cannot be exported (before any work is done)."""
    if fmt not in FORMATS:
        raise FbnasError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if quantize not in (None, "float32", "int8"):
        raise FbnasError(f"unknown quantization {quantize!r}; valid: int8")
    if quantize == "int8" and fmt != "onnx":
        raise FbnasError("--quantize int8 needs --format onnx (onnxruntime static quantization, QDQ format)")


def export_model(model: nn.Module, out: str | Path | None, fmt: str, input_shape: tuple[int, ...],
                 opset: int = 17, seed: int = 0, fold: bool = True, tolerance: float = 1e-3,
                 check_batch: int = 2, threads: int = 1, quantize: str | None = None,
                 calibration: Sequence[np.ndarray] = (), holdout: Sequence[np.ndarray] = (),
                 calibration_name: str = "random", int8_tolerance: float | None = None) -> ExportResult:
    """Fold BN, export ``model`` to ``fmt`` traced at ``input_shape``, check it and write ``out`` atomically.

    The check runs the exported file on a random batch of ``check_batch`` (exercising the dynamic batch
    axis) and compares with the PyTorch model; it raises :class:`FbnasError` when the difference exceeds
    ``tolerance`` (scaled by the output magnitude when that is above 1). ``out=None`` only checks.

    ``quantize="int8"`` (ONNX only): the checked fp32 file is then quantized statically (QDQ, per-channel
    weights, :mod:`fbnas.export.quantize`) with activation ranges from the ``calibration`` batches, and the
    int8 file is checked against the fp32 one on the ``holdout`` batches (relative error at most
    ``int8_tolerance``); only the int8 file is written.
    """
    check_format(fmt, quantize)
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(*input_shape, generator=gen)
    x = torch.randn(check_batch, *input_shape[1:], generator=gen)
    with torch.no_grad():
        reference = model(x)
    folded_model, pairs = fold_batchnorm(model) if fold else (model, 0)
    with torch.no_grad():
        folded_out = folded_model(x)
    scale = float(reference.abs().max())
    fold_diff = max_abs_diff(folded_out, reference)
    _check("batch-norm folding", fold_diff, scale, tolerance)
    try:
        if fmt == "onnx":
            data = onnx_bytes(folded_model, example, opset)
            exported = run_onnx(data, x, threads)
        else:
            data = torchscript_bytes(folded_model, example)
            exported = run_torchscript(data, x)
    except FbnasError:
        raise
    except Exception as e:  # noqa: BLE001 - report exporter/runtime failures as one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FbnasError(f"{fmt} export failed: {type(e).__name__}: {first[:300]}") from None
    diff = max_abs_diff(exported, reference)
    _check(f"{fmt} check", diff, scale, tolerance)
    fp32_data, int8_err = None, None
    if quantize == "int8":
        from fbnas.export import quantize as q

        fp32_data = data
        try:
            data = q.quantize_onnx(fp32_data, calibration)
        except FbnasError:
            raise
        except Exception as e:  # noqa: BLE001 - report quantizer failures as one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FbnasError(f"int8 quantization failed: {type(e).__name__}: {first[:300]}") from None
        int8_err = q.check_int8(fp32_data, data, holdout or calibration[-1:],
                                q.INT8_TOLERANCE if int8_tolerance is None else int8_tolerance, threads)
    path = None
    if out is not None:
        from fbnas.io import atomic_write_bytes

        try:
            path = str(atomic_write_bytes(out, data))
        except OSError as e:
            raise FbnasError(f"{out}: cannot write ({e.strerror or type(e).__name__})") from None
    return ExportResult(path, fmt, list(input_shape), pairs, count_batchnorm(folded_model), fold_diff, diff, scale,
                        check_batch, len(data), opset if fmt == "onnx" else None,
                        "int8" if quantize == "int8" else "float32", int8_err,
                        calibration_name if quantize == "int8" else None, fp32_data)
