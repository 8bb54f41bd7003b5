"""Hard latency caps on real spaces and real latency tables: for caps at the 10th, 50th and 90th percentile of a
space's latency (uniform architectures), the most probable architecture under the cap and 100 samples of the
distribution restricted to it all have a table latency <= the cap.

    .venv/bin/python benchmarks/caps_check.py --out docs/results/caps_check_2026-12-01.json

The distribution is a seeded Dirichlet(0.5) per layer tilted towards slow blocks (or a search's learned one with
``--result``), so the unconstrained argmax is over every cap and the cap binds. Tables: built on first use (missing
entries only), torch, 1 thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SPACES = {"fbnet_v1_224": ("fbnet_v1", 224, 3, 1000, "runs/lut/fbnet_v1_224.sqlite"),
          "fbnet_fmnist": ("fbnet_fmnist", 28, 1, 10, "runs/lut/fmnist28.sqlite")}


def check(name: str, samples: int, seed: int, result: str | None) -> dict:
    from fbnas.lut import LatencyTable, build_table
    from fbnas.search.caps import Cap, log_probs, most_probable_under_caps, percentile_limits, sample_under_caps
    from fbnas.space import load_space

    space_name, size, channels, classes, db = SPACES[name]
    space = load_space(space_name, input_size=size, in_channels=channels)
    build_table(db, space=space, input_size=size, in_channels=channels, num_classes=classes, progress=False)
    lut = LatencyTable(db, num_classes=classes)
    cm = lut.cost_model(space)
    costs = [t.numpy().astype(np.float64) for _, t in cm.terms]
    rng = np.random.default_rng(seed)
    if result:
        probs = [np.asarray(p) for p in json.loads(Path(result).read_text())["probs"]]
    else:  # tilted towards each layer's slow blocks
        probs = []
        for c in costs:
            p = rng.dirichlet(np.full(len(c), 0.5)) * np.exp(3.0 * (c - c.mean()) / (c.std() + 1e-12))
            probs.append(p / p.sum())
    base = Cap("latency_ms", 0.0, costs, cm.fixed, "ms")
    rows = []
    for q, limit in zip((10, 50, 90), percentile_limits(base, [10, 50, 90], seed=seed), strict=True):
        cap = Cap("latency_ms", limit, costs, cm.fixed, "ms")
        t0 = time.perf_counter()
        best = most_probable_under_caps(log_probs(probs), [cap])
        dp_s = time.perf_counter() - t0
        drawn = sample_under_caps(probs, [cap], samples, np.random.default_rng(seed + q))
        lat = [lut.predict(space.build(space.from_indices(c)).arch).total_ms for c in [best, *drawn]]
        argmax = [int(np.argmax(p)) for p in probs]
        rows.append({"percentile": q, "cap_ms": limit, "best_ms": lat[0], "samples": len(drawn),
                     "max_sample_ms": max(lat[1:]), "all_within_cap": all(x <= limit for x in lat),
                     "unconstrained_argmax_ms": cap.of(argmax), "dp_seconds": dp_s})
    return {"space": name, "cheapest_ms": base.cheapest(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    from fbnas.io import atomic_write_json
    from fbnas.runtime import tune_allocator

    tune_allocator()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--result", default=None, help="a search's result.json: its learned probabilities")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    report = {"checks": [check(s, args.samples, args.seed, args.result) for s in args.spaces]}
    report["all_within_cap"] = all(r["all_within_cap"] for c in report["checks"] for r in c["rows"])
    if args.out:
        atomic_write_json(args.out, report)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0 if report["all_within_cap"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
