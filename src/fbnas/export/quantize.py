"""Static post-training int8 quantization of an exported ONNX model (onnxruntime, QDQ format).

Weights are quantized per output channel (int8, symmetric), activations per tensor (uint8) with ranges taken
by MinMax calibration over a few hundred inputs: real training images when a dataset is given, else random
normal inputs of the traced shape. The result is an ordinary ONNX file in which QuantizeLinear /
DequantizeLinear pairs surround every quantized operator (also at the model's input and output, so it takes
and returns float32 like the fp32 file); onnxruntime fuses the pairs into integer kernels when it loads it.

The check compares the int8 file with the fp32 file on held-out inputs of the calibration distribution:
``max |int8 - fp32| / max |fp32|`` must stay below a tolerance (``INT8_TOLERANCE``, measured, see
docs/zoo_and_cost.md, int8) -- a float32 tolerance would be meaningless for 8-bit arithmetic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fbnas.errors import FbnasError

DTYPES = ("float32", "int8")
CALIBRATIONS = ("random", "fashion-mnist")
# max |int8 - fp32| / max |fp32| allowed on held-out inputs. Measured: 0.01-0.05 on fbnas zoo / searched nets
# (random and real calibration); a wrongly calibrated model (ranges 100x too small) is at 1.3.
INT8_TOLERANCE = 0.15
# activations uint8 (asymmetric), weights int8 (symmetric, per channel): onnxruntime's x86 choice (U8S8). With
# int8 activations (S8S8) onnxruntime 1.32 left depthwise convs and the residual Add in float here (dequantized
# weights on every run) and an int8 block was slower than fp32; with U8S8 every conv and Add of a block fuses
# into QLinearConv / QLinearAdd.
ACTIVATION_TYPE = "uint8"
# weights in 7 bits (onnxruntime's reduce_range): x86 CPUs without VNNI (AVX2 / AVX-512 before VNNI) compute
# U8S8 dot products with vpmaddubsw, whose 16-bit sum of two uint8 x int8 products saturates at full-range
# weights. Measured on an AVX2-only AMD EPYC (tests/test_export_int8.py's net): 0.186 relative error with 8-bit
# weights, over the tolerance, and 0.096 with 7-bit ones; VNNI CPUs (which do not saturate) lose one bit of
# weight precision.
REDUCE_RANGE = True


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """onnxruntime.quantization logs a pre-processing hint and per-node notes through ``logging``, and its
    calibration session warns about initializers it drops."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)


class _Reader:
    """An onnxruntime CalibrationDataReader over a list of input batches."""

    def __init__(self, name: str, batches: Sequence[np.ndarray]) -> None:
        self.name = name
        self.it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self.it, None)
        return None if b is None else {self.name: np.ascontiguousarray(b, dtype=np.float32)}

    def rewind(self) -> None:  # pragma: no cover - the MinMax calibrator reads once
        pass


def random_calibration(shape: Sequence[int], n: int = 64, seed: int = 0, batch: int = 1) -> list[np.ndarray]:
    """``n`` random-normal inputs (in batches of ``batch``) of the traced ``shape`` (batch axis replaced)."""
    rng = np.random.default_rng(seed)
    per = [batch] + [int(s) for s in shape[1:]]
    return [rng.standard_normal(per).astype(np.float32) for _ in range(max(1, n // batch))]


def quantize_onnx(data: bytes, calibration: Sequence[np.ndarray], per_channel: bool = True) -> bytes:
    """The int8 QDQ version of the fp32 ONNX model ``data``, calibrated (MinMax) on ``calibration`` batches."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise FbnasError("int8 quantization needs at least one calibration input")
    model = _inline_shared_initializers(onnx.load_from_string(data))
    name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="fbnas-q-") as tmp, _quiet_ort():
        out = Path(tmp) / "int8.onnx"
        # the calibrator writes an augmented copy of the model into the working directory's temp files
        quantize_static(model, out, _Reader(name, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=REDUCE_RANGE,
                        activation_type=QuantType.QUInt8 if ACTIVATION_TYPE == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return out.read_bytes()


def _inline_shared_initializers(model):
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer.

    The legacy exporter stores equal tensors once and feeds the duplicates through Identity nodes (two convs
    with equal biases -- every fresh-init block after BN folding). The quantizer then sees a bias that is not an
    initializer, leaves that conv in float with its weights dequantized on every run, and the "int8" block is
    several times slower than fp32 (measured: 4.1 ms vs 0.67 ms for an ir k5 e6 block at 28x28).
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), node.output[0])
            model.graph.initializer.append(copy)
            inits[copy.name] = copy
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max |b|`` (``b`` the reference)."""
    scale = float(np.abs(b).max())
    return float(np.abs(a.astype(np.float64) - b).max() / max(scale, 1e-12))


def session(data: bytes, threads: int = 1):
    """An onnxruntime CPU session of ``threads`` intra-op threads (what every check and accuracy run uses)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run_batches(sess, batches: Sequence[np.ndarray]) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: np.ascontiguousarray(b, dtype=np.float32)})[0] for b in batches])


def check_int8(fp32: bytes, int8: bytes, inputs: Sequence[np.ndarray], tolerance: float = INT8_TOLERANCE,
               threads: int = 1) -> float:
    """The relative error of the int8 model against the fp32 one on ``inputs``; above ``tolerance``: error."""
    err = relative_error(run_batches(session(int8, threads), inputs), run_batches(session(fp32, threads), inputs))
    if not err <= tolerance:
        raise FbnasError(f"int8 check: max |int8 - fp32| / max |fp32| = {err:.3g} on held-out calibration inputs "
                         f"exceeds the tolerance {tolerance:g}; nothing was written")
    return err


def accuracy(data: bytes, images: np.ndarray, labels: np.ndarray, batch: int = 500, threads: int = 1) -> float:
    """Top-1 accuracy (fraction) of an ONNX classifier on normalised ``images``."""
    sess = session(data, threads)
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(images), batch):
        logits = sess.run(None, {name: np.ascontiguousarray(images[i:i + batch], dtype=np.float32)})[0]
        correct += int((logits.argmax(axis=1) == labels[i:i + batch]).sum())
    return correct / max(1, len(images))


def dataset_images(name: str, train: bool, n: int | None, seed: int = 0, data_dir: str | os.PathLike | None = None,
                   size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised float32 images (N, C, H, W) and labels of ``name``; ``n`` random ones (seeded) or all.

    Normalisation is the training pipeline's: the *training* set's per-channel mean and std; images larger than
    ``size`` are downsampled to it as training does.
    """
    import torch

    from fbnas.data.datasets import load_dataset

    stats = load_dataset(name, data_dir, train=True)
    data = stats if train else load_dataset(name, data_dir, train=False)
    if size is not None and size < data.image_size:
        data = data.resized(size)
    images, labels = data.images, data.labels
    if n is not None and n < len(images):
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
        images, labels = images[idx], labels[idx]
    mean = torch.tensor(stats.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(stats.std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (images.float() / 255.0 - mean) / std
    return x.numpy(), labels.numpy()
