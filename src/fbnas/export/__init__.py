"""fbnas.export: batch-norm folding and checked ONNX / TorchScript export of FBNet models.

Public API: :func:`fold_batchnorm`, :func:`fold_conv_bn`, :func:`export_model` (-> :class:`ExportResult`),
:func:`load_source` (zoo name, spec file or training checkpoint -> :class:`ModelSource`),
:func:`check_format`, :func:`calibrate_untrained`, :func:`onnx_bytes`, :func:`torchscript_bytes`, :func:`run_onnx`,
:func:`quantize_onnx` (static int8 PTQ, QDQ format).
"""

from fbnas.export.exporter import (
    FORMATS,
    ExportResult,
    check_format,
    export_model,
    max_abs_diff,
    onnx_bytes,
    run_onnx,
    run_torchscript,
    torchscript_bytes,
)
from fbnas.export.fold import count_batchnorm, fold_batchnorm, fold_conv_bn
from fbnas.export.quantize import INT8_TOLERANCE, quantize_onnx
from fbnas.export.source import ModelSource, calibrate_untrained, checkpoint_file, load_source

__all__ = [
    "FORMATS", "ExportResult", "ModelSource", "calibrate_untrained", "check_format", "checkpoint_file",
    "count_batchnorm", "export_model", "fold_batchnorm", "fold_conv_bn", "load_source", "max_abs_diff",
    "onnx_bytes", "run_onnx", "run_torchscript", "torchscript_bytes", "INT8_TOLERANCE", "quantize_onnx",
]
