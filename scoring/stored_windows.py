"""Where a run keeps its windows, written once, and found again from a picture's manifest.

A single picture's run keeps them in its folder (``windows.parquet``). A collection keeps
one copy of each picture's windows: its part of the run's dataset,
``windows/image=<name>/part-00000.parquet``, which Spark and pyarrow read as one table
partitioned by picture. Each picture's manifest says where its windows are (``windows``: a
path relative to the picture's folder), so a reader of one picture's folder finds them.

Runs before this layout kept a collection's windows twice (in each picture's folder and in
the dataset) and their manifests have no ``windows``: a picture's own ``windows.parquet``
is meant then, and a reader of the whole run reads the dataset only, never both.
"""
from __future__ import annotations

import posixpath

from core import storage
from scoring.outputs import DATASET

__all__ = ["WINDOWS_FILE", "PART", "dataset_part", "manifest_pointer", "windows_path", "write_part"]

#: A single picture's windows, in its folder (and in a collection's picture folders before this layout).
WINDOWS_FILE = "windows.parquet"
#: A picture's one file in the run's dataset.
PART = "part-00000.parquet"


def dataset_part(run_root: str, name: str) -> str:
    """Where picture ``name``'s windows go in the run's dataset under ``run_root`` (a path or URL)."""
    return storage.join(run_root, DATASET, f"image={name}", PART)


def manifest_pointer(name: str | None) -> str:
    """What a picture's manifest says of where its windows are, relative to its folder: its part
    of the run's dataset for a picture of a collection named ``name``, ``windows.parquet`` for a
    single picture's run (``name`` None).

    >>> manifest_pointer("scan-1")
    '../windows/image=scan-1/part-00000.parquet'
    >>> manifest_pointer(None)
    'windows.parquet'
    """
    return WINDOWS_FILE if name is None else posixpath.join("..", DATASET, f"image={name}", PART)


def windows_path(folder: str, manifest: dict | None) -> str:
    """The path (or URL) of the windows of the picture whose folder is ``folder`` and whose
    manifest is ``manifest``: where its ``windows`` points, else its own ``windows.parquet``
    (a single picture, or a collection's picture written before this layout).

    Raises
    ------
    ValueError
        When the manifest's ``windows`` is not a relative path.
    """
    pointer = manifest.get("windows", WINDOWS_FILE) if isinstance(manifest, dict) else WINDOWS_FILE
    if not isinstance(pointer, str) or not pointer or pointer.startswith("/") or "://" in pointer:
        raise ValueError(f"the manifest in {folder} says its windows are at {pointer!r}: expected a path relative "
                         f"to the picture's folder, e.g. {WINDOWS_FILE!r}")
    scheme, sep, path = folder.rpartition("://")
    return scheme + sep + posixpath.normpath(posixpath.join(path, pointer))


def write_part(fs, path: str, data: bytes, *, staging: str, url: str) -> None:
    """Write a picture's part of the run's dataset at ``path`` (``url`` names it in messages),
    whole or not at all: a reader never sees half of it.

    On blob storage one upload (a blob appears once its upload completes, replacing any
    before it); on a disk (``staging``: a folder of the same filesystem, the picture's own
    staging folder) written there and renamed into place.
    """
    if not storage.renames(fs):
        storage.write_bytes(fs, path, data, url=url)
        return
    folder = posixpath.dirname(path)
    storage.make_folder(fs, folder, url=posixpath.dirname(url))
    staged = storage.join(staging, posixpath.basename(path))
    storage.write_bytes(fs, staged, data, url=url)
    with storage.errors("write", url, writing=True):
        fs.mv(staged, path)
