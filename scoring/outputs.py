"""Commit a run's outputs atomically into a local folder or a storage URL.

Files are written under a temporary prefix inside the destination, moved into place when
all of them are complete, and ``_SUCCESS`` is written last: a reader that sees
``_SUCCESS`` sees a finished run, and a failed run leaves no ``_SUCCESS``.
"""
from __future__ import annotations

import logging
import uuid

from scoring import storage
from scoring.errors import OutputExistsError, TilescanError

__all__ = ["RunWriter", "SUCCESS", "OUTPUT_FILES"]

logger = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
OUTPUT_FILES = ("windows.parquet", "detections.json", "overlay.png", "manifest.json")


class RunWriter:
    """Stage files under ``OUT/_temporary-<id>/``, then :meth:`commit` or :meth:`abort`."""

    def __init__(self, url: str, *, overwrite: bool = False, storage_options: dict | None = None):
        self.url = url
        self.overwrite = overwrite
        self.fs, self.root = storage.filesystem(url, storage_options)
        self.staging = storage.join(self.root, f"_temporary-{uuid.uuid4().hex[:12]}")
        self._created_root = False
        self._written: list[str] = []

    def check(self) -> None:
        """Refuse a destination that holds a finished run, unless overwriting."""
        try:
            finished = self.fs.exists(storage.join(self.root, SUCCESS))
            is_file = self.fs.isfile(self.root)
        except (OSError, ValueError) as exc:
            raise TilescanError(f"cannot reach output {self.url}: {exc}") from None
        if is_file:
            raise TilescanError(f"--out {self.url} is a file, not a folder")
        if finished and not self.overwrite:
            raise OutputExistsError(f"{self.url} already holds a finished run; pass --overwrite to replace it")

    def write(self, name: str, data: bytes) -> None:
        if not self._created_root and not self.fs.exists(self.root):
            self._created_root = True
        self.fs.makedirs(self.staging, exist_ok=True)
        storage.write_bytes(self.fs, storage.join(self.staging, name), data)
        self._written.append(name)

    def commit(self) -> None:
        """Move every staged file into place, then write ``_SUCCESS``."""
        success = storage.join(self.root, SUCCESS)
        if self.fs.exists(success):
            self.fs.rm(success)  # from here on the folder no longer claims to be finished
        for name in self._written:
            target = storage.join(self.root, name)
            if self.fs.exists(target):
                self.fs.rm(target)
            self.fs.mv(storage.join(self.staging, name), target)
        self._remove(self.staging)
        storage.write_bytes(self.fs, success, b"")

    def abort(self) -> None:
        """Remove what this run began; never raises (it runs while another error is reported)."""
        try:
            self._remove(self.staging)
            if self._created_root and self.fs.exists(self.root) and not self.fs.ls(self.root):
                self._remove(self.root)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            logger.warning("could not clean up %s: %s", self.staging, exc)

    def _remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
