"""Benchmarks behind ``fbnas bench NAME``: each module registers with :func:`register_bench`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BENCH_MODULES = ["train", "supernet", "dmasking"]
BENCHES: dict[str, tuple[str, Callable[[Any], None], Callable[[Any], dict]]] = {}


def register_bench(name: str, help: str, add_args: Callable[[Any], None], run: Callable[[Any], dict]) -> None:
    """``add_args(parser)`` adds options; ``run(args)`` returns the JSON-able result dict."""
    BENCHES[name] = (help, add_args, run)
