"""What every command-line entry point shares: logging, storage options, one-line errors.

Logging is configured here and nowhere else: libraries only create their loggers.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Callable

from core.credentials import load_options_file, parse_option_pairs
from core.errors import Terminated, TilescanError
from core.redaction import redact, remember_secrets

__all__ = ["configure_logging", "add_storage_arguments", "add_version_argument", "storage_options_from_args",
           "run_command", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries that log every request or step at INFO.
_NOISY = ("azure", "PIL", "matplotlib", "urllib3")
#: py4j logs the Java side's errors (and a Ctrl-C's broken connection) as screens of
#: tracebacks; tilescan reports what matters in one line.
_SILENT = ("py4j",)


def configure_logging(*, quiet: bool = False) -> None:
    """INFO (WARNING with ``quiet``) to stderr in the one tilescan format."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S",
                        force=True)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _SILENT:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


class _Version(argparse.Action):
    """``--version``: prints :func:`core.project.version_line` (found only when asked: it runs git)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from core.project import version_line

        print(version_line())
        parser.exit()


def add_version_argument(parser) -> None:
    """Add ``--version`` to an argparse parser."""
    parser.add_argument("--version", action=_Version, help="print tilescan's version (and commit) and exit")


def _widths(text: str) -> tuple:
    try:
        return tuple(int(width) for width in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three whole numbers like 32,64,128, got {text!r}") from None


def add_widths_argument(parser, default: tuple) -> None:
    """Add ``--widths A,B,C``: the padding-free network's three widths (both trainers)."""
    parser.add_argument("--widths", type=_widths, metavar="A,B,C",
                        help="the padding-free network's widths (architecture valid), default "
                             + ",".join(map(str, default)))


def add_storage_arguments(parser) -> None:
    """Add ``--storage-options-file`` and ``--storage-option`` to an argparse parser."""
    group = parser.add_argument_group("storage (docs/azure.md)")
    group.add_argument("--storage-options-file", metavar="JSON",
                       help="JSON object of options for remote URLs, secrets included, e.g. "
                            '{"account_name": "...", "account_key": "..."}')
    group.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                       help="an option for remote URLs (repeatable; overrides the file), e.g. account_name=NAME, "
                            "retry_total=2; no secrets here")


def storage_options_from_args(args) -> dict:
    """The explicit storage options: the file's, overridden by ``--storage-option`` pairs."""
    options = load_options_file(args.storage_options_file) if args.storage_options_file else {}
    options.update(parse_option_pairs(args.storage_option))
    remember_secrets(options)
    return options


def _terminate(signum, frame):
    raise Terminated


def run_command(body: Callable[[], int], *bad_input: type[BaseException]) -> int:
    """Run ``body``; a :class:`TilescanError` (or one of ``bad_input``) becomes one ``error:`` line and exit 2.

    Ctrl-C becomes one line and exit 130 instead of a traceback; SIGTERM one line and exit 143
    (the process cleans up as it ends, where the default handler would end it without a word).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return body()
    except (TilescanError, *bad_input) as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
