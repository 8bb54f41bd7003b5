"""``fbnas profile NAME_OR_SPEC_OR_CHECKPOINT``: analytic MACs and params, in total and per stage/block."""

from __future__ import annotations


def add_parser(sub) -> None:
    from fbnas.commands.common import add_format_arg

    p = sub.add_parser("profile", help="MACs and params of an architecture, per stage (and per block)")
    p.add_argument("arch", metavar="NAME_OR_SPEC_OR_CHECKPOINT",
                   help="zoo name, spec file (YAML/JSON), a search's result.json, or a training checkpoint")
    p.add_argument("--input-size", type=int, default=None, help="input height/width (default: the spec's)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier outputs (default: the checkpoint's, else 1000)")
    p.add_argument("--blocks", action="store_true", help="also print every block (table format)")
    add_format_arg(p)
    p.set_defaults(func=run)


def _num_classes(arch: str, requested: int | None) -> int:
    """``--num-classes``, else the checkpoint's own, else 1000."""
    if requested is not None:
        return requested
    from fbnas.export.source import checkpoint_file

    ckpt = checkpoint_file(arch)
    if ckpt is not None:
        from fbnas.arch.zoo import load_checkpoint_arch

        classes = load_checkpoint_arch(ckpt)[1]
        if classes:
            return classes
    return 1000


def _hw(hw) -> str:
    return f"{hw[0]}x{hw[1]}"


def run(args) -> int:
    from fbnas.arch.zoo import resolve_arch
    from fbnas.commands.common import print_json, print_table
    from fbnas.cost.counting import count
    from fbnas.errors import FbnasError

    for flag, value in (("--input-size", args.input_size), ("--num-classes", args.num_classes)):
        if value is not None and value < 1:
            raise FbnasError(f"{flag} must be a positive integer, got {value}")
    spec = resolve_arch(args.arch)
    report = count(spec, args.input_size, _num_classes(args.arch, args.num_classes))
    if args.format == "json":
        print_json({"name": spec.name, **report.to_dict(), "in_channels": spec.in_channels})
        return 0
    print(f"{spec.name}: input {spec.in_channels}x{report.input_size}x{report.input_size}, "
          f"{report.num_classes} classes")
    print(f"MACs {report.macs:,} ({report.macs / 1e6:.3f} M)   params {report.params:,} ({report.params / 1e6:.3f} M, "
          f"conv/linear weights)   all params {report.params_total:,}\n")
    total = max(1, report.macs)
    stages = [{**s, "out_hw": _hw(s["out_hw"]), "macs_m": s["macs"] / 1e6,
               "share": f"{100 * s['macs'] / total:.1f}%"} for s in report.per_stage()]
    print_table(stages, [("stage", "stage"), ("blocks", "blocks"), ("out_channels", "channels"),
                         ("out_hw", "output"), ("macs_m", "MACs (M)"), ("share", "% MACs"),
                         ("params", "params"), ("params_total", "all params")])
    if args.blocks:
        print()
        blocks = [{"name": b.name, "op": b.op, "io": f"{b.in_channels}->{b.out_channels}", "stride": b.stride,
                   "out_hw": _hw(b.out_hw), "macs_m": b.macs / 1e6, "params": b.params,
                   "params_total": b.params_total} for b in report.blocks]
        print_table(blocks, [("name", "block"), ("op", "op"), ("io", "channels"), ("stride", "stride"),
                             ("out_hw", "output"), ("macs_m", "MACs (M)"), ("params", "params"),
                             ("params_total", "all params")])
    return 0
