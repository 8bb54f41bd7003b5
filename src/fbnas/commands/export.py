"""``fbnas export NAME_OR_SPEC_OR_CHECKPOINT --format onnx|torchscript --out FILE``: BN folded, checked, atomic."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX or TorchScript (BN folded, checked against PyTorch)")
    p.add_argument("arch", metavar="NAME_OR_SPEC_OR_CHECKPOINT",
                   help="zoo name, spec file (YAML/JSON), or a training checkpoint (*.pt or its run folder)")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="output format")
    p.add_argument("--out", required=True, help="output file (written atomically, only after the check passed)")
    p.add_argument("--input-size", type=int, default=None,
                   help="input height/width to trace at (default: the spec's / the checkpoint's)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier outputs (default 1000; a checkpoint keeps its own)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--batch", type=int, default=1, help="batch size of the traced input (the batch axis is dynamic)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random check input (and of untrained BN values)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="max abs difference allowed (times max |output| when that exceeds 1)")
    p.add_argument("--no-fold", action="store_true", help="keep batch norm as separate nodes")
    p.add_argument("--raw-init", action="store_true",
                   help="untrained models: export the fresh init as is (default: random BN values calibrated on "
                        "random input, so the check exercises every layer)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads for the check")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="static post-training int8 quantization (onnxruntime QDQ, per-channel weights; --format onnx)")
    p.add_argument("--calibration", choices=["random", "fashion-mnist"], default=None,
                   help="--quantize: activation ranges from random inputs (default) or from real training images "
                        "(then fp32 and int8 test accuracy are measured and the drop printed)")
    p.add_argument("--calibration-samples", type=int, default=256, help="--quantize: calibration inputs (default 256)")
    p.add_argument("--data-dir", default=None,
                   help="--calibration dataset folder (default: $FBNAS_DATA or the system's)")
    p.add_argument("--int8-tolerance", type=float, default=None,
                   help="--quantize: max |int8 - fp32| / max |fp32| on held-out inputs (default 0.15)")
    p.set_defaults(func=run)


def run(args) -> int:
    from fbnas.cost.counting import count
    from fbnas.errors import FbnasError
    from fbnas.export import calibrate_untrained, check_format, export_model, load_source
    from fbnas.io import check_output
    from fbnas.search.strategy import checkpoint_arch

    for flag, value, low in (("--input-size", args.input_size, 1), ("--num-classes", args.num_classes, 1),
                             ("--batch", args.batch, 1), ("--opset", args.opset, 7), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            raise FbnasError(f"{flag} must be >= {low}, got {value}")
    if not args.tolerance >= 0:
        raise FbnasError(f"--tolerance must be >= 0, got {args.tolerance}")
    if args.quantize is None and args.calibration is not None:
        raise FbnasError("--calibration applies to --quantize int8 only")
    check_format(args.format, args.quantize)
    if args.calibration_samples < 1:
        raise FbnasError(f"--calibration-samples must be >= 1, got {args.calibration_samples}")
    if args.int8_tolerance is not None and not args.int8_tolerance >= 0:
        raise FbnasError(f"--int8-tolerance must be >= 0, got {args.int8_tolerance}")
    check_output(args.out, "--out")  # before any work
    stopped = checkpoint_arch(args.arch)  # a search without a result: the argmax of its last checkpoint
    src = load_source(stopped if stopped is not None else args.arch, args.num_classes)
    size = src.spec.input_size if args.input_size is None else args.input_size
    count(src.spec, size, src.num_classes)  # a one-line SpecError when the input is too small for the net
    shape = (args.batch, src.spec.in_channels, size, size)
    if not src.trained and not args.raw_init:
        calibrate_untrained(src.model, shape, seed=args.seed)
    calibration, holdout, test = _calibration(args, src, shape) if args.quantize else ([], [], None)
    result = export_model(src.model, args.out, args.format, shape, opset=args.opset, seed=args.seed,
                          fold=not args.no_fold, tolerance=args.tolerance, threads=args.threads,
                          quantize=args.quantize, calibration=calibration, holdout=holdout,
                          calibration_name=args.calibration or "random", int8_tolerance=args.int8_tolerance)
    weights = "trained weights (checkpoint)" if src.trained else (
        "fresh init" if args.raw_init else f"untrained, BN calibrated on random input (seed {args.seed})")
    print(f"{src.spec.name}: {weights}, {src.num_classes} classes, input {'x'.join(map(str, shape))}")
    if not args.no_fold:
        print(f"batch norm folded: {result.folded_pairs} conv+bn pairs, {result.batchnorm_left} BN left, "
              f"max abs diff vs unfolded {result.fold_max_abs_diff:.3g}")
    runner = "onnxruntime (CPUExecutionProvider)" if args.format == "onnx" else "torch.jit.load"
    print(f"check with {runner} on a random batch of {result.check_batch}: max abs diff {result.max_abs_diff:.3g} "
          f"(max |output| {result.max_abs_output:.3g})")
    if args.quantize:
        print(f"int8 (static PTQ, QDQ, per-channel weights) calibrated on {len(calibration) * calibration[0].shape[0]} "
              f"{'training images' if args.calibration == 'fashion-mnist' else 'random inputs'}: max |int8 - fp32| / "
              f"max |fp32| {result.int8_rel_error:.3g} on {sum(len(b) for b in holdout)} held-out inputs")
        if test is not None:
            from fbnas.export.quantize import accuracy

            fp32_acc = accuracy(result.fp32_onnx, *test, threads=args.threads)
            int8_acc = accuracy(Path(str(result.path)).read_bytes(), *test, threads=args.threads)
            print(f"test accuracy on {len(test[1])} {args.calibration} test images (onnxruntime): fp32 "
                  f"{100 * fp32_acc:.2f}%, int8 {100 * int8_acc:.2f}%, drop {100 * (fp32_acc - int8_acc):.2f} points")
        elif not src.trained:
            print("note: untrained weights; --calibration fashion-mnist with a trained checkpoint measures accuracy")
    opset = f", opset {result.opset}" if result.opset else ""
    dtype = ", int8 QDQ" if args.quantize else ""
    print(f"wrote {result.path} ({args.format}{opset}{dtype}, {result.size_bytes / 1e6:.2f} MB)")
    sys.stdout.flush()
    return 0


def _calibration(args, src, shape: tuple[int, ...]):
    """(calibration batches, held-out batches, (test images, labels) or None) for ``--quantize``."""
    from fbnas.errors import FbnasError
    from fbnas.export.quantize import dataset_images, random_calibration

    n = args.calibration_samples
    if args.calibration in (None, "random"):
        return random_calibration(shape, n, seed=args.seed), random_calibration(shape, 32, seed=args.seed + 1), None
    if shape[1] != 1 or src.num_classes != 10:
        raise FbnasError(f"--calibration {args.calibration}: the model takes {shape[1]} channel(s) and has "
                         f"{src.num_classes} classes; Fashion-MNIST needs 1 and 10")
    images, _ = dataset_images(args.calibration, True, n + 64, seed=args.seed, data_dir=args.data_dir, size=shape[2])
    if images.shape[2] != shape[2]:
        raise FbnasError(f"--calibration {args.calibration}: images are {images.shape[2]} px, the model is traced "
                         f"at {shape[2]} (--input-size)")
    cal = [images[i:i + 32] for i in range(0, n, 32)]
    test = dataset_images(args.calibration, False, None, data_dir=args.data_dir, size=shape[2])
    return cal, [images[n:]], test
