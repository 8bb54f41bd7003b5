"""The ``fbnas`` command line. Each command lives in ``fbnas.commands.<name>`` and registers itself.

User errors (:class:`FbnasError`, bad files, missing data) print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command modules: each defines add_parser(subparsers) that sets ``func`` on its parser
COMMAND_MODULES = ["models", "profile", "scale", "train", "export", "lut", "search", "run", "bench"]


def _setup_allocator() -> None:
    """Keep freed buffers in the process (environment.md: 2x faster, 1-3% timing spread)."""
    from fbnas.runtime import tune_allocator

    tune_allocator()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbnas", description="Hardware-aware NAS of the FBNet family.")
    from fbnas.version import __version__

    parser.add_argument("--version", action="version", version=f"fbnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"fbnas.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"fbnas.commands.{name}":
                continue  # command not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from fbnas.errors import FbnasError

    _setup_allocator()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except FbnasError as e:
        print(f"fbnas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fbnas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
