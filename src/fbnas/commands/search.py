"""``fbnas search STRATEGY --config FILE --out DIR [--preset quick] [--resume]``."""

from __future__ import annotations

import importlib

from fbnas.search import SEARCH_MODULES, STRATEGIES


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="run an architecture search (dnas, dmasking)")
    ssub = p.add_subparsers(dest="strategy", metavar="STRATEGY")
    for name in SEARCH_MODULES:
        try:
            importlib.import_module(f"fbnas.search.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"fbnas.search.{name}":
                raise
    for name, (help_text, add_args, run) in STRATEGIES.items():
        sp = ssub.add_parser(name, help=help_text)
        sp.add_argument("--config", required=True, help="search config (YAML)")
        sp.add_argument("--out", required=True, help="run folder (checkpoints, history, plots, result.json)")
        sp.add_argument("--preset", default=None, help="named preset inside the config, e.g. quick")
        sp.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        add_args(sp)
        sp.set_defaults(func=run)
