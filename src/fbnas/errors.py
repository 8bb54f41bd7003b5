"""User-facing errors: the CLI prints these as one line and exits non-zero, never a traceback."""


class FbnasError(Exception):
    """A problem with the user's input (file, field, option); the message names what is wrong."""


class SpecError(FbnasError):
    """An architecture or search-space spec is invalid."""


class DataError(FbnasError):
    """A dataset file or folder is missing, truncated or inconsistent."""


class DivergenceError(FbnasError):
    """A run's loss, metrics or state stopped being finite; the message names the epoch, the value, the likely
    cause and the checkpoint that was kept (never replaced by a non-finite one)."""
