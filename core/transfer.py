"""Copy a file or a folder tree between local disk and a data lake, in parallel.

Files already at the destination with the same size are skipped unless ``overwrite``, so
a re-run after a failure resumes. The command line is ``app/lake.py``.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from core import storage
from core.credentials import is_local
from core.errors import StorageError
from core.redaction import redact

__all__ = ["Transfer", "TransferResult", "plan_transfer", "transfer", "DEFAULT_THREADS", "MAX_THREADS"]

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 16
# Read and write size, and the block size of both files: with adlfs' default (50 MiB) each
# thread would hold a 50 MiB buffer. 8 MiB blocks allow blobs up to 390 GiB (50,000 blocks).
CHUNK_BYTES = 8 * 2**20
#: The most parallel copies: each holds up to three CHUNK_BYTES buffers (read-ahead, the
#: chunk, the write block), 3 GiB at 128; a large --threads on a large tree would exhaust memory.
MAX_THREADS = 128


@dataclass(frozen=True)
class Transfer:
    """One file to copy: source and destination paths inside their filesystems, size in bytes."""

    source: str
    dest: str
    size: int


@dataclass(frozen=True)
class TransferResult:
    """What a transfer did; ``failed`` holds ``(relative path, redacted message)``."""

    copied: int
    skipped: int
    bytes: int
    seconds: float
    threads: int
    failed: tuple = field(default_factory=tuple)
    not_attempted: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_attempted

    def summary(self, verb: str, dest: str) -> str:
        line = (f"{verb}: {self.copied} file{'s' * (self.copied != 1)} copied, {self.skipped} skipped (same size), "
                f"{_human(self.bytes)} in {self.seconds:.1f} s with {self.threads} threads -> {redact(dest)}")
        if self.failed:
            line += f"; {len(self.failed)} failed"
        if self.not_attempted:
            line += f", {self.not_attempted} not attempted"
        return line


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _listing(fs, root: str) -> dict:
    """``{relative path: size}`` of the files under ``root``; empty when it does not exist."""
    fs.invalidate_cache()
    try:
        found = fs.find(root, detail=True)
    except (FileNotFoundError, NotADirectoryError):  # nothing there, or a file in the way
        return {}
    prefix = root.rstrip("/") + "/"
    files, skipped = {}, []
    for path, info in found.items():
        if not path.startswith(prefix):
            continue
        link = bool(info.get("islink"))
        if link:  # a listing does not follow links: the file a link names is copied
            info = fs.info(path)
        if info.get("type", "file") == "file":
            files[path[len(prefix):]] = info.get("size")
        elif link or info.get("type") != "directory":
            skipped.append(path)
    if skipped:
        logger.warning("skipped %d entries that are not files (pipes, sockets, devices, links to folders), e.g. %s",
                       len(skipped), redact(skipped[0]))
    return files


def _file_size(fs, path: str) -> int | None:
    fs.invalidate_cache()
    try:
        info = fs.info(path)
    except (FileNotFoundError, NotADirectoryError):  # nothing there, or a file in the way
        return None
    return info.get("size") if info.get("type", "file") == "file" else None


def _check_inside(rel: str, src: str, dest: str) -> None:
    """Refuse a source name that would put its copy outside ``dest``: ``..`` steps (with either
    slash: blob names may hold backslashes, which a download would turn into folders) or an
    absolute path."""
    steps = rel.replace("\\", "/").split("/")
    drive = len(rel) > 1 and rel[0].isalpha() and rel[1] == ":" and (len(rel) == 2 or rel[2] in "/\\")
    if ".." in steps or rel.startswith(("/", "\\")) or drive:
        raise StorageError(f"refusing to copy {redact(storage.join(src, rel))}: its name leads outside "
                           f"{redact(dest)}; nothing was copied")


def plan_transfer(src_fs, src: str, dest_fs, dest: str, *, overwrite: bool = False) -> tuple[list[Transfer], int]:
    """The copies to make from ``src`` to ``dest`` (paths inside their filesystems), and how many are skipped.

    ``src`` is a file (copied to ``dest``) or a folder (its tree copied under ``dest``).

    Raises
    ------
    FileNotFoundError
        When ``src`` does not exist.
    StorageError
        When a source name would put its copy outside ``dest``.
    """
    src_fs.invalidate_cache()
    if src_fs.isfile(src):
        sources = {"": src_fs.info(src)["size"]}
        if dest.endswith("/") or dest_fs.isdir(dest):
            dest = storage.join(dest.rstrip("/"), src.rstrip("/").rsplit("/", 1)[-1])
    else:
        sources = _listing(src_fs, src)
        if not sources and not src_fs.isdir(src):
            raise FileNotFoundError(src)
    if overwrite:
        existing = {}
    elif "" in sources:
        existing = {"": _file_size(dest_fs, dest)}
    else:
        existing = _listing(dest_fs, dest)
    for rel in sources:
        _check_inside(rel, src, dest)
    todo, skipped = [], 0
    for rel, size in sorted(sources.items()):
        if not overwrite and existing.get(rel) == size:
            skipped += 1
            continue
        todo.append(Transfer(storage.join(src, rel) if rel else src, storage.join(dest, rel) if rel else dest, size))
    return todo, skipped


def _copy(src_fs, dest_fs, item: Transfer, progress) -> None:
    with src_fs.open(item.source, "rb", block_size=CHUNK_BYTES) as fin:
        fout = dest_fs.open(item.dest, "wb", block_size=CHUNK_BYTES)
        try:
            with fout:
                while True:
                    chunk = fin.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    fout.write(chunk)
                    progress(len(chunk))
        except Exception:
            try:  # a partial file must not pass for a complete one later
                dest_fs.rm_file(item.dest)
            except Exception as exc:  # noqa: BLE001 - the copy's own error is the one to report
                logger.debug("could not remove partial %s: %s", item.dest, redact(exc))
            raise


def transfer(src_url: str, dest_url: str, *, threads: int = DEFAULT_THREADS, overwrite: bool = False,
             storage_options: dict | None = None, progress: bool = True) -> TransferResult:
    """Copy ``src_url`` (a file or folder) to ``dest_url`` with ``threads`` parallel copies.

    The first failure stops new copies from starting; copies in flight finish. Every
    failure is returned in :attr:`TransferResult.failed`, none is swallowed.

    Raises
    ------
    ValueError
        ``threads`` outside [1, :data:`MAX_THREADS`].
    FileNotFoundError
        The source does not exist.
    StorageError
        A URL cannot be used, or listing the source or destination failed.
    """
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"`threads` must be in [1, {MAX_THREADS}], got {threads}")
    from tqdm import tqdm

    started = time.time()
    src_fs, src = storage.filesystem(src_url, storage_options)
    dest_fs, dest = storage.filesystem(dest_url, storage_options)
    with storage.errors("list", f"{src_url} or {dest_url}"):
        todo, skipped = plan_transfer(src_fs, src, dest_fs, dest, overwrite=overwrite)
    if is_local(dest_url):
        for parent in sorted({item.dest.rsplit("/", 1)[0] for item in todo if "/" in item.dest}):
            storage.make_folder(dest_fs, parent, url=parent)
    elif todo:
        storage.make_folder(dest_fs, dest, url=dest_url)  # creates the container if needed
    lock = threading.Lock()
    bar = tqdm(total=sum(item.size for item in todo), unit="B", unit_scale=True, unit_divisor=1024,
               file=sys.stderr, disable=not progress or not todo, leave=False)

    def advance(n: int) -> None:
        with lock:
            bar.update(n)

    failed, copied, done_bytes = [], 0, 0
    with bar, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lake") as pool:
        futures = {pool.submit(_copy, src_fs, dest_fs, item, advance): item for item in todo}
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.cancelled():
                continue
            item = futures[future]
            exc = future.exception()  # waits for copies still in flight
            if exc is None:
                copied += 1
                done_bytes += item.size
            else:
                rel = item.source[len(src):].lstrip("/") or item.source.rsplit("/", 1)[-1]
                failed.append((rel, redact(exc)))
    not_attempted = len(todo) - copied - len(failed)
    return TransferResult(copied=copied, skipped=skipped, bytes=done_bytes, seconds=time.time() - started,
                          threads=threads, failed=tuple(failed), not_attempted=not_attempted)
