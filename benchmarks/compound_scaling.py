"""Measured MACs growth of compound scaling against the predicted (alpha * beta^2 * gamma^2)^phi.

For each base model and phi = 0..N, scales with `fbnas scale`'s rules (depth ceil, width to the divisor with the
90% rule, resolution rounded) and counts analytically: the whole growth, and each factor alone (depth only,
width only, resolution only) against alpha^phi, beta^(2 phi), gamma^(2 phi). For EfficientNet-B0 it also puts
the released B1..B7 (a table, not the formula) beside the formula's phi = 1..7. Prints JSON (and --out).

    PYTHONPATH=src .venv/bin/python benchmarks/compound_scaling.py --out docs/results/compound_scaling.json
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["efficientnet_b0", "ghostnet_100", "fbnet_c", "fbnet_v2_f4"])
    p.add_argument("--max-phi", type=int, default=7)
    p.add_argument("--alpha", type=float, default=1.2)
    p.add_argument("--beta", type=float, default=1.1)
    p.add_argument("--gamma", type=float, default=1.15)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    from fbnas.arch.scaling import compound, flops_factor, scale_spec
    from fbnas.arch.zoo import get_spec
    from fbnas.cost.counting import count

    a, b, g = args.alpha, args.beta, args.gamma
    rows = []
    for name in args.models:
        base = get_spec(name)
        m0 = count(base).macs
        for phi in range(args.max_phi + 1):
            c = compound(phi, a, b, g)
            full = count(scale_spec(base, c.depth, c.width, c.resolution)).macs / m0
            depth = count(scale_spec(base, depth=c.depth)).macs / m0
            width = count(scale_spec(base, width=c.width)).macs / m0
            res = count(scale_spec(base, resolution=c.resolution)).macs / m0
            rows.append({"model": name, "phi": phi, "measured": round(full, 4),
                         "predicted": round(flops_factor(a, b, g, phi), 4),
                         "depth_only": round(depth, 4), "alpha^phi": round(a ** phi, 4),
                         "width_only": round(width, 4), "beta^2phi": round(b ** (2 * phi), 4),
                         "resolution_only": round(res, 4), "gamma^2phi": round(g ** (2 * phi), 4),
                         "input_size": scale_spec(base, resolution=c.resolution).input_size})
    released = []
    if "efficientnet_b0" in args.models:
        m0 = count(get_spec("efficientnet_b0")).macs
        for i in range(1, 8):
            macs = count(get_spec(f"efficientnet_b{i}")).macs
            released.append({"model": f"efficientnet_b{i}", "macs": macs, "growth_vs_b0": round(macs / m0, 4),
                             "formula_phi": i, "predicted": round(flops_factor(a, b, g, i), 4)})
    result = {"alpha": a, "beta": b, "gamma": g, "rows": rows, "released_efficientnet": released}
    text = json.dumps(result, indent=1)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
