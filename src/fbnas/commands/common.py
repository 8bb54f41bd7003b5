"""Helpers shared by CLI commands: output formats, arch loading."""

from __future__ import annotations

import json
import sys
from typing import Any


def add_format_arg(p: Any, default: str = "table") -> None:
    p.add_argument("--format", choices=["table", "json"], default=default, help="output format")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """Print ``rows`` as an aligned text table; ``columns`` is [(key, header)]."""
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        padded = (c.rjust(w) if j and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        print("  ".join(padded))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def add_run_args(p: Any, out_help: str, set_example: str) -> None:
    """The options of every command that runs in a run folder from a config: --config, --out, --preset, --resume,
    --overwrite, --set."""
    p.add_argument("--config", required=True, help="config (YAML)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--preset", default=None, help="named preset inside the config, e.g. quick")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (what finished is kept)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (kept until the new run has written its first checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field, e.g. --set {set_example} (repeatable)")
