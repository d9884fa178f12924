"""Copy a file or a folder tree between local disk and a data lake, in parallel.

    python -m app.lake upload images/ az://scans/2024/ --threads 32
    python -m app.lake download az://results/run-7 ./run-7

Files already at the destination with the same size are skipped unless ``--overwrite``;
a re-run after a failure therefore resumes. Progress goes to stderr, a one-line summary to
stdout; exit code 0 when every file is in place, 1 when some failed, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import sys

from app import cli
from core.credentials import is_local
from core.errors import TilescanError
from core.redaction import redact
from core.transfer import CHUNK_BYTES, DEFAULT_THREADS, MAX_THREADS, transfer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.lake", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("command", choices=("upload", "download"),
                   help="upload: SRC is local, DEST a URL; download: SRC a URL, DEST local")
    p.add_argument("src", help="file or folder to copy")
    p.add_argument("dest", help="where it goes (a folder's tree goes under it)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"parallel copies, at most {MAX_THREADS} (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="copy files even when the destination has the same size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    cli.add_storage_arguments(p)
    return p


def _copy(args: argparse.Namespace) -> int:
    if not 1 <= args.threads <= MAX_THREADS:
        raise TilescanError(f"--threads must be in [1, {MAX_THREADS}] (each copy buffers "
                            f"{CHUNK_BYTES // 2**20} MiB blocks), got {args.threads}")
    if args.command == "upload" and not is_local(args.src):
        raise TilescanError(f"upload copies from a local path, got {redact(args.src)}; use download to copy from a URL")
    if args.command == "download" and not is_local(args.dest):
        raise TilescanError(f"download copies to a local path, got {redact(args.dest)}; use upload to copy to a URL")
    try:
        result = transfer(args.src, args.dest, threads=args.threads, overwrite=args.overwrite,
                          storage_options=cli.storage_options_from_args(args), progress=not args.quiet)
    except FileNotFoundError:
        raise TilescanError(f"{args.command}: source not found: {redact(args.src)}") from None
    for rel, message in result.failed:
        print(f"error: {rel}: {message}", file=sys.stderr)
    print(result.summary(args.command, args.dest))
    return 0 if result.ok else 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(quiet=True)
    return cli.run_command(lambda: _copy(args))


if __name__ == "__main__":
    sys.exit(main())
