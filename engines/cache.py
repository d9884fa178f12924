"""One loaded engine per Python worker, kept for all the tasks it runs.

Spark reuses Python workers between tasks (``spark.python.worker.reuse``), so a model
loaded here is loaded once per worker, not once per task.
"""
from __future__ import annotations

import threading

from engines import create_engine, engine_class

__all__ = ["cached_engine", "clear"]

_engines: dict = {}
_lock = threading.Lock()


def cached_engine(sha256: str, load, name: str, threads: int):
    """The engine for ``(sha256, name, threads)``, loading it on first use.

    ``load`` is a zero-argument callable returning the
    :class:`~core.bundle.ModelBundle` (a Spark broadcast's value), called only when
    this worker has no such engine yet, so the bundle bytes are deserialised once.
    """
    key = (sha256, name, threads)
    with _lock:
        if key not in _engines:
            bundle = load()
            if bundle.sha256 != sha256:
                raise ValueError(f"bundle sha256 {bundle.sha256[:12]} does not match the key {sha256[:12]}")
            needed = engine_class(name).required_files
            _engines[key] = create_engine(bundle.subset(needed), name, threads=threads)
        return _engines[key]


def clear() -> None:
    with _lock:
        _engines.clear()
