"""Stop a PySpark Python worker from re-reading its zips before every task (Python 3.10 and 3.11).

Before each task a worker calls :func:`importlib.invalidate_caches`, and on these Python
versions a zip on ``sys.path`` answers that by reading its whole directory again
(CPython gh-103200, lazy from 3.12 on; Spark calls it only when needed from SPARK-54744).
With ``pyspark.zip``, py4j's zip and the executor zip on the path, that is 0.1 to 0.2 s of
every task here, while the tasks of a picture take about a second each.
:func:`keep_zip_directories` makes each zip re-read its directory only when its file has
changed: Spark never rewrites a file it has shipped (a second one of the same name is
refused), so that keeps what invalidating is for.
"""
from __future__ import annotations

import os
import sys
import weakref
import zipimport

__all__ = ["keep_zip_directories"]

_AFFECTED = (3, 10) <= sys.version_info[:2] < (3, 12)
#: Each zip importer's file as it last read its directory (see :func:`_stamp`).
_read_stamps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stamp(path: str):
    """What changes when a file is replaced or rewritten: ``None`` when it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


def keep_zip_directories() -> bool:
    """Re-read a zip's directory on invalidation only when the zip changed; ``True`` when installed.

    Idempotent and per process. Importers that exist now have just been re-read by this
    task's set-up, so their current files are taken as read.
    """
    if not _AFFECTED:
        return False
    importer = zipimport.zipimporter
    if getattr(importer.invalidate_caches, "keeps_unchanged", False):
        return True
    reread = importer.invalidate_caches

    def invalidate_caches(self) -> None:
        stamp = _stamp(self.archive)
        if stamp is None or stamp != _read_stamps.get(self):
            reread(self)
            _read_stamps[self] = stamp

    invalidate_caches.keeps_unchanged = True
    for finder in list(sys.path_importer_cache.values()):
        if isinstance(finder, importer):
            _read_stamps[finder] = _stamp(finder.archive)
    importer.invalidate_caches = invalidate_caches
    return True
