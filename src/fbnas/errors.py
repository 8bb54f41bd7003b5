"""User-facing errors: the CLI prints these as one line and exits non-zero, never a traceback."""


import re

_SIMPLE_KEY = re.compile(r"^[\w.\-]+$")


def key_name(key: object) -> str:
    """A key as an error message shows it: plain when it is a simple name, quoted (repr) otherwise, so a key
    holding a newline or spaces can neither break the one line nor hide."""
    return str(key) if isinstance(key, str) and _SIMPLE_KEY.match(key) else repr(key)


class FbnasError(Exception):
    """A problem with the user's input (file, field, option); the message names what is wrong. A message is one
    line: line breaks from quoted user input become spaces."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and ("\n" in args[0] or "\r" in args[0]):
            args = (args[0].replace("\r\n", " ").replace("\n", " ").replace("\r", " "),)
        super().__init__(*args)


class SpecError(FbnasError):
    """An architecture or search-space spec is invalid."""


class DataError(FbnasError):
    """A dataset file or folder is missing, truncated or inconsistent."""


class DivergenceError(FbnasError):
    """A run's loss, metrics or state stopped being finite; the message names the epoch, the value, the likely
    cause and the checkpoint that was kept (never replaced by a non-finite one)."""
