"""The ``fbnas`` command line. Each command lives in ``fbnas.commands.<name>`` and registers itself.

One error path for every command: a user error (:class:`FbnasError`, a bad option, an expected OS error such
as a full disk, a missing permission or a path that is a folder, or running out of memory) prints one line
``fbnas: error: ...`` and exits 2; anything else is an internal error, printed as one line asking for a
report, exit 1 (``FBNAS_TRACEBACK=1`` shows its traceback instead).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import NoReturn

# command modules: each defines add_parser(subparsers) that sets ``func`` on its parser
COMMAND_MODULES = ["models", "profile", "scale", "train", "export", "lut", "search", "run", "bench"]

# OS errors that are the user's or the machine's situation, not a bug: one line, exit 2
EXPECTED_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                   errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE, errno.ENOTEMPTY,
                   errno.EIO, errno.ENOMEM, errno.ELOOP, errno.EFBIG}


def _setup_allocator() -> None:
    """Keep freed buffers in the process (environment.md: 2x faster, 1-3% timing spread)."""
    from fbnas.runtime import tune_allocator

    tune_allocator()


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as the one ``fbnas: error:`` line of every other error (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fbnas: error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fbnas", description="Hardware-aware NAS of the FBNet family.")
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


def one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def describe_os_error(e: OSError) -> str:
    """``FILE: reason`` of an OSError (the file when known, the system's wording of the reason)."""
    reason = e.strerror or (str(e.args[0]) if e.args else type(e).__name__)
    names = [str(n) for n in (e.filename, getattr(e, "filename2", None)) if n is not None]
    return one_line(f"{' -> '.join(names)}: {reason}" if names else reason)


def report_error(e: BaseException) -> int:
    """Print the one line for ``e`` and return the exit status (re-raise when FBNAS_TRACEBACK=1 asks for it)."""
    from fbnas.errors import FbnasError

    if isinstance(e, FbnasError):
        print(f"fbnas: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    if isinstance(e, MemoryError):
        print("fbnas: error: out of memory (a smaller batch size, input size, subset or model needs less)",
              file=sys.stderr)
        return 2
    if isinstance(e, OSError) and e.errno in EXPECTED_ERRNOS:
        print(f"fbnas: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    if os.environ.get("FBNAS_TRACEBACK") == "1":
        raise e
    print(f"fbnas: internal error: {type(e).__name__}: {one_line(str(e))} (please report it with the command "
          "line; FBNAS_TRACEBACK=1 shows the traceback)", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    _setup_allocator()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors (already printed)
        return int(e.code or 0) if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from fbnas import distributed

    one_rank_of_many = distributed.world().size > 1
    try:
        rc = int(_call(args) or 0)
    except KeyboardInterrupt:
        print("fbnas: interrupted", file=sys.stderr)
        rc = 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        rc = 1
    except Exception as e:  # noqa: BLE001 - the one error path of the command line
        rc = report_error(e)
    if one_rank_of_many:
        distributed.end_process(rc)
    return rc


def _call(args) -> int:
    """The command, as one rank of a data-parallel job when torchrun started this process (WORLD_SIZE > 1):
    it joins the process group first; ranks other than 0 print nothing on stdout (rank 0 reports). The rank
    leaves the group in :func:`main` (``distributed.end_process``), whatever the command's outcome."""
    from fbnas import distributed

    if distributed.world().size <= 1:
        return args.func(args)
    w = distributed.init()
    saved = sys.stdout
    if not w.is_writer:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:
        return args.func(args)
    finally:
        if sys.stdout is not saved:
            sys.stdout.close()
            sys.stdout = saved


if __name__ == "__main__":
    sys.exit(main())
