"""``fbnas scale NAME_OR_SPEC --phi N``: EfficientNet's compound scaling of any spec (arXiv 1905.11946, eq. 3).

Depth alpha^phi (repeats rounded up), width beta^phi (channels rounded to the width divisor, 90% rule),
resolution gamma^phi; writes the scaled spec and reports its MACs growth against the predicted
(alpha * beta^2 * gamma^2)^phi.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    from fbnas.commands.common import add_format_arg

    p = sub.add_parser("scale", help="compound-scale an architecture (EfficientNet: depth, width, resolution)")
    p.add_argument("arch", metavar="NAME_OR_SPEC", help="zoo name, spec file (YAML/JSON) or a search's result.json")
    p.add_argument("--phi", type=float, required=True, help="compound coefficient (EfficientNet's phi)")
    p.add_argument("--alpha", type=float, default=1.2, help="depth base (default 1.2)")
    p.add_argument("--beta", type=float, default=1.1, help="width base (default 1.1)")
    p.add_argument("--gamma", type=float, default=1.15, help="resolution base (default 1.15)")
    p.add_argument("--out", required=True, help="where to write the scaled spec (.yaml/.yml or .json)")
    p.add_argument("--name", default=None, help="name of the scaled spec (default: NAME_phiN)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs for the counts (default 1000)")
    add_format_arg(p)
    p.set_defaults(func=run)


def scale_report(spec, phi: float, alpha: float, beta: float, gamma: float, name: str | None = None,
                 num_classes: int = 1000) -> tuple[object, dict]:
    """The scaled spec and a summary: coefficients, MACs/params before and after, measured vs predicted growth."""
    from fbnas.arch.scaling import compound, flops_factor, scale_spec
    from fbnas.cost.counting import count

    c = compound(phi, alpha, beta, gamma)
    label = f"{phi:g}".replace("-", "m").replace(".", "p")
    scaled = scale_spec(spec, depth=c.depth, width=c.width, resolution=c.resolution,
                        name=name or f"{spec.name}_phi{label}")
    base, new = count(spec, num_classes=num_classes), count(scaled, num_classes=num_classes)
    return scaled, {
        "name": scaled.name, "base": spec.name, "phi": phi, "alpha": alpha, "beta": beta, "gamma": gamma,
        "depth": c.depth, "width": c.width, "resolution": c.resolution,
        "input_size": scaled.input_size, "base_input_size": spec.input_size,
        "blocks": len(scaled.expand()), "base_blocks": len(spec.expand()),
        "macs": new.macs, "base_macs": base.macs, "params_total": new.params_total,
        "base_params_total": base.params_total, "macs_growth": new.macs / base.macs,
        "predicted_growth": flops_factor(alpha, beta, gamma, phi),
    }


def run(args) -> int:
    import math
    from pathlib import Path

    from fbnas.arch.zoo import resolve_arch
    from fbnas.commands.common import print_json
    from fbnas.errors import FbnasError

    if not math.isfinite(args.phi):
        raise FbnasError(f"--phi must be a finite number, got {args.phi}")
    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml", ".json"):
        raise FbnasError(f"--out {out}: the scaled spec is written as YAML (.yaml/.yml) or JSON (.json)")
    if args.num_classes < 1:
        raise FbnasError(f"--num-classes must be a positive integer, got {args.num_classes}")
    spec = resolve_arch(args.arch)
    scaled, info = scale_report(spec, args.phi, args.alpha, args.beta, args.gamma, args.name, args.num_classes)
    try:
        info["out"] = str(scaled.save(out))
    except OSError as e:
        raise FbnasError(f"{out}: cannot write ({e.strerror or type(e).__name__})") from None
    if args.format == "json":
        print_json(info)
        return 0
    print(f"{info['name']}: {spec.name} scaled at phi={args.phi:g} (alpha {args.alpha:g}, beta {args.beta:g}, "
          f"gamma {args.gamma:g})")
    print(f"depth x{info['depth']:.3f} ({info['base_blocks']} -> {info['blocks']} blocks), width x{info['width']:.3f}, "
          f"resolution x{info['resolution']:.3f} ({info['base_input_size']} -> {info['input_size']} px)")
    print(f"MACs {info['base_macs'] / 1e6:,.1f} M -> {info['macs'] / 1e6:,.1f} M: x{info['macs_growth']:.3f} measured, "
          f"x{info['predicted_growth']:.3f} predicted by (alpha beta^2 gamma^2)^phi")
    print(f"params {info['base_params_total']:,} -> {info['params_total']:,}")
    print(f"wrote {info['out']}")
    return 0
