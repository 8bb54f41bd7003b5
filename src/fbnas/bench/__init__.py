"""Benchmarks behind ``fbnas bench NAME``: each module registers with :func:`register_bench`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BENCH_MODULES = ["train", "supernet", "dmasking", "fpnas", "ddp"]
BENCHES: dict[str, tuple[str, Callable[[Any], None], Callable[[Any], dict]]] = {}


def run_worker(module: str, opts: dict, what: str) -> dict:
    """Run ``fbnas.bench.<module>._worker(opts)`` in a fresh Python process (so its peak RSS is its own) and
    return the JSON it prints last."""
    import json
    import subprocess
    import sys

    code = (f"import json, sys; from fbnas.bench.{module} import _worker; "
            "print(json.dumps(_worker(json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(opts)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench {what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def register_bench(name: str, help: str, add_args: Callable[[Any], None], run: Callable[[Any], dict]) -> None:
    """``add_args(parser)`` adds options; ``run(args)`` returns the JSON-able result dict."""
    BENCHES[name] = (help, add_args, run)
