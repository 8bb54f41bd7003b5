"""Three short DMaskingNAS searches with decreasing MACs targets: does the argmax land within +-10%?

    python benchmarks/dmasking_targets.py [--config configs/dmasking_fashion_mnist.yaml] [--targets 1.0 0.7 0.4]

Each search uses the config's ``quick`` preset, ``loss.form: target`` with the ``abs`` penalty and one thread,
in its own run folder under ``--out``. Prints JSON: per target the found architecture's analytic MACs
(``fbnas.cost.counting.count`` of the result's arch spec), their ratio, and whether the found MACs decrease
as the target decreases.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from fbnas.config import load_config
from fbnas.search.strategy import get_strategy, run_search


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/dmasking_fashion_mnist.yaml")
    p.add_argument("--targets", type=float, nargs="+", default=[1.0, 0.7, 0.4], help="MMACs, decreasing")
    p.add_argument("--out", default="runs/dmasking_targets")
    p.add_argument("--preset", default="quick")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    args = p.parse_args(argv)
    rows = []
    for target in args.targets:
        dmasking = get_strategy("dmasking")
        cfg = load_config(args.config, dmasking.config_model, args.preset,
                          ["threads=1", "loss.form=target", "loss.penalty=abs", "loss.cost=macs",
                           f"loss.target={target}", *args.set])
        out = Path(args.out) / f"target_{target:g}"
        if out.exists():
            shutil.rmtree(out)
        result = run_search(dmasking, cfg, out, log=lambda m: print(m, file=sys.stderr, flush=True), source=args.config)
        found = result["macs"] / 1e6
        rows.append({"target": target, "found_macs": round(found, 4), "ratio": round(found / target, 4),
                     "within_10pct": abs(found / target - 1.0) <= 0.10, "input_size": result["arch"]["input_size"],
                     "choice_names": result["choice_names"], "run": str(out),
                     "search_seconds": result["timing"]["search_seconds"]})
        print(f"target {target}: found {found:.4f} MMACs (ratio {found / target:.3f})", file=sys.stderr, flush=True)
    order = sorted(rows, key=lambda r: -r["target"])
    report = {"rows": rows, "all_within_10pct": all(r["within_10pct"] for r in rows),
              "decreasing": all(a["found_macs"] > b["found_macs"] for a, b in zip(order, order[1:], strict=False))}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
