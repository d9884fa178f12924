"""Errors that reach the user as one line and exit code 2."""
from __future__ import annotations

__all__ = ["TilescanError", "InputError", "BundleError", "OutputExistsError", "StorageError", "StorageUnreachable",
           "Terminated"]


class TilescanError(Exception):
    """An error caused by what the user asked for, reported without a traceback."""


class InputError(TilescanError):
    """The input picture cannot be used."""


class BundleError(TilescanError):
    """The model bundle is missing, malformed or does not match its checksums."""


class OutputExistsError(TilescanError):
    """The output folder already holds a finished run."""


class StorageError(TilescanError):
    """A path or URL that cannot be used, or storage that failed; the message holds no secret."""


class StorageUnreachable(StorageError):
    """The storage did not answer (refused, reset or timed out), as opposed to answering no."""


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM (a scheduler or ``kill``): stopped as Ctrl-C stops it, with one line."""
