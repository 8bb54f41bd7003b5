"""Does the latency term move the search? The paper preset with its loss (CE * alpha * (log LAT)^beta) against
the same search with the term off (``loss.form: none``), per seed: the argmax architecture's table latency.

    .venv/bin/python benchmarks/latency_term_check.py --seeds 0 1 2 3 4 --out docs/results/latency_term_check.json

The check passes when the latency term makes the found architecture at least 25% faster on 4 of 5 seeds.
Finished searches in ``--runs`` are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def search(seed: int, form: str | None, runs: Path, preset: str, config: str) -> dict:
    from fbnas.config import load_config
    from fbnas.runs import RunFolder
    from fbnas.search.strategy import get_strategy, run_search

    out = runs / f"seed{seed}_{form or 'paper'}"
    folder = RunFolder(out, "search")
    if folder.is_finished:
        return folder.read_result()
    dnas = get_strategy("dnas")
    overrides = [f"seed={seed}", "threads=1"] + ([f"loss.form={form}"] if form else [])
    cfg = load_config(config, dnas.config_model, preset, overrides)
    return run_search(dnas, cfg, out, resume=folder.has_checkpoint, log=lambda m: print(m, file=sys.stderr),
                      source=config)


def main(argv: list[str] | None = None) -> int:
    from fbnas.io import atomic_write_json
    from fbnas.runtime import tune_allocator

    tune_allocator()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/dnas_fashion_mnist.yaml")
    p.add_argument("--preset", default="paper")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--runs", default="runs/latency_term_check")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = []
    for seed in args.seeds:
        with_term = search(seed, None, Path(args.runs), args.preset, args.config)
        without = search(seed, "none", Path(args.runs), args.preset, args.config)
        lower = 1.0 - with_term["latency_ms"] / without["latency_ms"]
        rows.append({"seed": seed, "paper_ms": with_term["latency_ms"], "none_ms": without["latency_ms"],
                     "lower_pct": round(100 * lower, 1), "paper_arch": with_term["choice_names"],
                     "none_arch": without["choice_names"]})
        print(f"seed {seed}: {with_term['latency_ms']:.3f} vs {without['latency_ms']:.3f} ms "
              f"({100 * lower:.1f}% lower)", file=sys.stderr, flush=True)
    report = {"preset": args.preset, "rows": rows,
              "seeds_at_least_25pct": sum(r["lower_pct"] >= 25 for r in rows), "seeds": len(rows)}
    if args.out:
        atomic_write_json(args.out, report)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
