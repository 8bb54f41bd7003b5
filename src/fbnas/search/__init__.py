"""Search strategies over a space; each registers itself for ``fbnas search NAME``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SEARCH_MODULES = ["dnas", "dmasking"]
STRATEGIES: dict[str, tuple[str, Callable[[Any], None], Callable[[Any], int]]] = {}


def register_strategy(name: str, help: str, add_args: Callable[[Any], None], run: Callable[[Any], int]) -> None:
    """``add_args(parser)`` adds options (``--config/--out/--preset/--resume`` are added for you)."""
    STRATEGIES[name] = (help, add_args, run)
