"""One storage interface for every path: local paths and fsspec URLs alike.

Everything that reads or writes a user's data goes through :func:`filesystem`, so a local
path, ``file://``, ``abfs://``/``az://`` (ADLS Gen2 through adlfs) and ``s3://`` behave the
same. Filesystem objects from fsspec pickle, so they can travel to executors.
"""
from __future__ import annotations

import posixpath

import fsspec

from scoring.errors import TilescanError

__all__ = ["filesystem", "read_bytes", "write_bytes", "join", "is_local", "StorageError"]


class StorageError(TilescanError):
    """A path or URL that cannot be used."""


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def filesystem(url: str, storage_options: dict | None = None):
    """Return ``(fs, path)`` for a local path or URL.

    Raises
    ------
    StorageError
        For retired or unknown protocols, with the form to use instead.
    """
    if url.startswith("adl://"):
        raise StorageError(
            "adl:// is Azure Data Lake Storage Gen1, retired on 29 February 2024; "
            "use ADLS Gen2: abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH"
        )
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot open {url}: {exc}") from None


def join(root: str, *parts: str) -> str:
    return posixpath.join(root, *parts)


def read_bytes(fs, path: str) -> bytes:
    with fs.open(path, "rb") as fh:
        return fh.read()


def write_bytes(fs, path: str, data: bytes) -> None:
    with fs.open(path, "wb") as fh:
        fh.write(data)
