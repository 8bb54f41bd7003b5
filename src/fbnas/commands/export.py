"""``fbnas export NAME_OR_SPEC_OR_CHECKPOINT --format onnx|torchscript --out FILE``: BN folded, checked, atomic."""

from __future__ import annotations

import sys


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
    p.set_defaults(func=run)


def run(args) -> int:
    from fbnas.cost.counting import count
    from fbnas.errors import FbnasError
    from fbnas.export import calibrate_untrained, export_model, load_source
    from fbnas.io import check_output
    from fbnas.search.strategy import checkpoint_arch

    for flag, value, low in (("--input-size", args.input_size, 1), ("--num-classes", args.num_classes, 1),
                             ("--batch", args.batch, 1), ("--opset", args.opset, 7), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            raise FbnasError(f"{flag} must be >= {low}, got {value}")
    if not args.tolerance >= 0:
        raise FbnasError(f"--tolerance must be >= 0, got {args.tolerance}")
    check_output(args.out, "--out")  # before any work
    stopped = checkpoint_arch(args.arch)  # a search without a result: the argmax of its last checkpoint
    src = load_source(stopped if stopped is not None else args.arch, args.num_classes)
    size = src.spec.input_size if args.input_size is None else args.input_size
    count(src.spec, size, src.num_classes)  # a one-line SpecError when the input is too small for the net
    shape = (args.batch, src.spec.in_channels, size, size)
    if not src.trained and not args.raw_init:
        calibrate_untrained(src.model, shape, seed=args.seed)
    result = export_model(src.model, args.out, args.format, shape, opset=args.opset, seed=args.seed,
                          fold=not args.no_fold, tolerance=args.tolerance, threads=args.threads)
    weights = "trained weights (checkpoint)" if src.trained else (
        "fresh init" if args.raw_init else f"untrained, BN calibrated on random input (seed {args.seed})")
    print(f"{src.spec.name}: {weights}, {src.num_classes} classes, input {'x'.join(map(str, shape))}")
    if not args.no_fold:
        print(f"batch norm folded: {result.folded_pairs} conv+bn pairs, {result.batchnorm_left} BN left, "
              f"max abs diff vs unfolded {result.fold_max_abs_diff:.3g}")
    runner = "onnxruntime (CPUExecutionProvider)" if args.format == "onnx" else "torch.jit.load"
    print(f"check with {runner} on a random batch of {result.check_batch}: max abs diff {result.max_abs_diff:.3g} "
          f"(max |output| {result.max_abs_output:.3g})")
    opset = f", opset {result.opset}" if result.opset else ""
    print(f"wrote {result.path} ({args.format}{opset}, {result.size_bytes / 1e6:.1f} MB)")
    sys.stdout.flush()
    return 0
