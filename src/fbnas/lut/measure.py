"""Measurement backends: build a LUT entry (or a whole network) and time it the same way every time.

``torch``: eager, eval, ``torch.inference_mode``, a fixed thread count, optional channels_last.
``onnxruntime``: the module exported alone (legacy exporter), CPU provider, fixed intra-op threads.
Blocks and whole networks go through the same protocol (:func:`fbnas.lut.target_script.measure_all`),
so the plain sum and an end-to-end measurement are comparable.
"""

from __future__ import annotations

import contextlib
import io
import platform
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from fbnas.errors import FbnasError
from fbnas.lut import target_script
from fbnas.lut.signature import DTYPES

BACKENDS = ("torch", "onnxruntime")
STATISTICS = ("auto", *target_script.STATISTICS)
resolve_statistic = target_script.resolve_statistic


def check_backend(backend: str, channels_last: bool = False, statistic: str = "auto", dtype: str = "float32") -> None:
    if backend not in BACKENDS:
        raise FbnasError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise FbnasError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if dtype == "int8" and backend != "onnxruntime":
        raise FbnasError("dtype int8 is measured in onnxruntime (static QDQ quantization): use --backend onnxruntime "
                         "(search config: lut.backend: onnxruntime)")
    if statistic not in STATISTICS:
        raise FbnasError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    if channels_last and backend != "torch":
        raise FbnasError("channels_last applies to backend torch only")


def check_statistic_threads(statistic: str, threads: int) -> None:
    if target_script.STATISTICS[statistic][1] == "cpu" and threads != 1:
        raise FbnasError(f"statistic {statistic!r} uses the thread CPU clock and needs --threads 1")


class Classifier(nn.Module):
    """What FBNetModel's head computes in eval: global average pool, flatten, linear."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class WithImage(nn.Module):
    """A block that reads the network's input image (ESPNet's input reinforcement), timed with a fixed image of
    the size its network has (``desc["image"]``), so the entry is called like any other block: ``module(x)``."""

    def __init__(self, block: nn.Module, image_shape: list[int]) -> None:
        super().__init__()
        self.block = block
        self.register_buffer("image", torch.randn(1, *image_shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, self.image.expand(x.shape[0], -1, -1, -1))


def build_module(desc: dict[str, Any]) -> nn.Module:
    """The eval-mode module of a LUT entry description (see :mod:`fbnas.lut.signature`)."""
    if desc["kind"] == "classifier":
        return Classifier(desc["cin"], desc["cout"]).eval()
    if desc["kind"] == "network":
        from fbnas.arch.spec import ArchSpec
        from fbnas.nn.model import FBNetModel

        return FBNetModel(ArchSpec.from_dict(desc["spec"]), int(desc["num_classes"])).eval()
    from fbnas.nn.ops import get_family

    family = get_family(desc["family"])
    module = family.build(desc["cin"], desc["cout"], desc["stride"], desc["build_params"]).eval()
    if getattr(module, "takes_image", False):
        return WithImage(module, list(desc["image"])).eval()
    return module


def input_shape(desc: dict[str, Any]) -> list[int]:
    return [int(desc["batch"]), int(desc["cin"]), int(desc["h"]), int(desc["w"])]


def fingerprint(backend: str, threads: int, statistic: str = "median", dtype: str = "float32") -> dict[str, Any]:
    """Where and how an entry was measured: CPU model, threads, backend, dtype and library versions."""
    from fbnas.runtime import tune_allocator

    fp: dict[str, Any] = {"cpu": target_script.cpu_model(), "machine": platform.machine(), "threads": int(threads),
                          "backend": backend, "torch": torch.__version__, "python": platform.python_version(),
                          "allocator_tuned": tune_allocator(), "statistic": statistic}
    if dtype != "float32":
        fp["dtype"] = dtype  # part of the device (store.device_of): int8 rows never stand in for fp32 ones
    if backend == "onnxruntime":
        import onnxruntime

        fp["onnxruntime"] = onnxruntime.__version__
    return fp


def this_device(dtype: str = "float32") -> str:
    """The device this machine's rows (of ``dtype``) are stored under (:func:`fbnas.lut.store.device_of`)."""
    from fbnas.lut.store import device_of

    return device_of({"cpu": target_script.cpu_model(), "machine": platform.machine(), "dtype": dtype})


def export_onnx(module: nn.Module, shape: list[int]) -> bytes:
    """Export ``module`` alone with the legacy (TorchScript) exporter; input 'x', output 'y'."""
    buf = io.BytesIO()
    x = torch.randn(*shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          opset_version=17, do_constant_folding=True)
    return buf.getvalue()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads and give the caller's setting back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Runner:
    """Turns modules into timed callables for one backend/thread/memory-format setting."""

    def __init__(self, backend: str, threads: int = 1, channels_last: bool = False,
                 statistic: str = "auto", dtype: str = "float32") -> None:
        check_backend(backend, channels_last, statistic, dtype)
        self.dtype = dtype
        statistic = resolve_statistic(statistic, threads)
        check_statistic_threads(statistic, threads)
        self.statistic = statistic
        self.backend = backend
        self.threads = int(threads)
        self.channels_last = channels_last

    def callable_for(self, module: nn.Module, shape: list[int]) -> Callable[[], Any]:
        module = module.eval()
        if self.backend == "onnxruntime":
            data = export_onnx(module, shape)
            if self.dtype == "int8":  # quantized alone, with its Q/DQ boundaries (fp32 in and out)
                from fbnas.export.quantize import quantize_onnx, random_calibration

                data = quantize_onnx(data, random_calibration(shape, 8 * shape[0], seed=0, batch=shape[0]))
            sess = target_script.make_session(data, self.threads)
            return target_script.session_callable(sess, shape)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        return lambda: module(x)

    @contextlib.contextmanager
    def _timing(self) -> Iterator[None]:
        """The setting every timing runs in: tuned allocator, fixed threads, inference mode for torch."""
        from fbnas.runtime import tune_allocator

        tune_allocator()
        mode = torch.inference_mode() if self.backend == "torch" else contextlib.nullcontext()
        with torch_threads(self.threads), mode:
            yield

    def _callables(self, items: dict[str, tuple[nn.Module, list[int]]]) -> dict[str, Callable[[], Any]]:
        return {k: self.callable_for(m, s) for k, (m, s) in items.items()}

    def measure(self, items: dict[str, tuple[nn.Module, list[int]]], rounds: int = 5,
                progress: Callable[[int], None] | None = None, **kw: Any) -> dict[str, dict[str, float | int]]:
        """Median/IQR/count in ms for every (module, input shape), interleaved over ``rounds``."""
        with self._timing():
            return target_script.measure_all(self._callables(items), rounds=rounds, progress=progress,
                                             statistic=self.statistic, **kw)

    def measure_paired(self, items: dict[str, tuple[nn.Module, list[int]]],
                       anchors: dict[str, tuple[nn.Module, list[int]]], anchors_stored_ms: float, rounds: int = 9,
                       progress: Callable[[int], None] | None = None) -> dict[str, dict[str, float | int]]:
        """:meth:`measure` with the anchors timed before every call (see ``target_script.measure_paired``)."""
        with self._timing():
            return target_script.measure_paired(self._callables(items), self._callables(anchors), anchors_stored_ms,
                                                rounds=rounds, progress=progress, statistic=self.statistic)
