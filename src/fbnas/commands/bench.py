"""``fbnas bench NAME``: speed and memory benchmarks that print (and optionally save) JSON."""

from __future__ import annotations

import importlib

from fbnas.bench import BENCH_MODULES, BENCHES
from fbnas.commands.common import add_format_arg, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark (train, supernet, dmasking, fpnas, ddp)")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    for name in BENCH_MODULES:
        try:
            importlib.import_module(f"fbnas.bench.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"fbnas.bench.{name}":
                raise
    for name, (help_text, add_args, run) in BENCHES.items():
        bp = bsub.add_parser(name, help=help_text)
        add_format_arg(bp, default="json")
        bp.add_argument("--out", help="also write the JSON result to this file")
        add_args(bp)
        bp.set_defaults(func=lambda a, run=run: _run(a, run))


def _run(args, run) -> int:
    from fbnas.io import atomic_write_json

    result = run(args)
    if args.out:
        atomic_write_json(args.out, result)
    if args.format == "json":
        print_json(result)
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0
