"""Commit a run's outputs atomically into a local folder or a storage URL.

Files are written under a temporary prefix inside the destination, moved into place when
all of them are complete, and ``_SUCCESS`` is written last: a reader that sees
``_SUCCESS`` sees a finished run, and a failed run leaves no ``_SUCCESS``.

On blob storage (adlfs) there are no real folders and a move is a copy plus a delete, so
every target's size is checked before ``_SUCCESS`` is written, and listing caches are
dropped before each existence check (adlfs answers ``exists`` from a cached listing).
"""
from __future__ import annotations

import logging
import re
import uuid

from core import storage
from core.errors import OutputExistsError, TilescanError
from core.redaction import redact

__all__ = ["RunWriter", "SUCCESS", "OUTPUT_FILES"]

logger = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
_STAGING = re.compile(r"^_temporary-[0-9a-f]{12}$")
OUTPUT_FILES = ("windows.parquet", "detections.json", "overlay.png", "manifest.json")


class RunWriter:
    """Stage files under ``OUT/_temporary-<id>/``, then :meth:`commit` or :meth:`abort`."""

    def __init__(self, url: str, *, overwrite: bool = False, storage_options: dict | None = None):
        self.url = url
        self.overwrite = overwrite
        self.fs, self.root = storage.filesystem(url, storage_options)
        staging = f"_temporary-{uuid.uuid4().hex[:12]}"
        self.staging, self._staging_url = storage.join(self.root, staging), storage.join(url, staging)
        self._created_root = False
        self._written: dict[str, int] = {}

    def check(self) -> None:
        """Refuse a destination that holds a finished run, unless overwriting."""
        with storage.errors("reach output", self.url):
            self.fs.invalidate_cache()
            finished = self.fs.exists(storage.join(self.root, SUCCESS))
            is_file = self.fs.isfile(self.root)
        if is_file:
            raise TilescanError(f"--out {self.url} is a file, not a folder")
        if finished and not self.overwrite:
            raise OutputExistsError(f"{self.url} already holds a finished run; pass --overwrite to replace it")

    def write(self, name: str, data: bytes) -> None:
        if not self._written:  # once: on blob storage makedirs is a request (it creates the container)
            with storage.errors("write", storage.join(self.url, name)):
                self._created_root = not self.fs.exists(self.root)
                self.fs.makedirs(self.staging, exist_ok=True)
        storage.write_bytes(self.fs, storage.join(self.staging, name), data,
                            url=storage.join(self._staging_url, name))
        self._written[name] = len(data)

    def commit(self) -> None:
        """Move every staged file into place, check their sizes, then write ``_SUCCESS``."""
        success = storage.join(self.root, SUCCESS)
        with storage.errors("commit the outputs to", self.url):
            self.fs.invalidate_cache()
            if self.fs.exists(success):
                self.fs.rm(success)  # from here on the folder no longer claims to be finished
            for name in self._written:
                self._move(name)
            self.fs.invalidate_cache()
            for name, size in self._written.items():
                found = self.fs.info(storage.join(self.root, name)).get("size")
                if found != size:
                    raise OSError(f"{name} has {found} bytes after the move, expected {size}")
            self._remove(self.staging)
            self._remove_stale_staging()
        storage.write_bytes(self.fs, success, b"", url=storage.join(self.url, SUCCESS))

    def _remove_stale_staging(self) -> None:
        """Remove what earlier failed runs staged here (their abort could not reach the storage)."""
        for path in self.fs.ls(self.root, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if _STAGING.match(name):
                logger.info("removing %s, left by a failed run", redact(storage.join(self.url, name)))
                self._remove(path)

    def _move(self, name: str) -> None:
        target = storage.join(self.root, name)
        if self.fs.exists(target):
            self.fs.rm(target)
        self.fs.mv(storage.join(self.staging, name), target)

    def abort(self) -> None:
        """Remove what this run began; never raises (it runs while another error is reported)."""
        try:
            self.fs.invalidate_cache()
            self._remove(self.staging)
            if self._created_root and self.fs.exists(self.root) and not self.fs.ls(self.root):
                self._remove(self.root)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            logger.warning("could not clean up %s: %s", redact(self._staging_url), redact(exc))

    def _remove(self, path: str) -> None:
        self.fs.invalidate_cache()
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
