"""One loaded engine per Python worker, kept for all the tasks it runs.

Spark reuses Python workers between tasks (``spark.python.worker.reuse``), so a model
loaded here is loaded, and its numbers checked (:mod:`engines.numerics`), once per
worker, not once per task. A failed check is kept too: the worker's later tasks fail with
it at once instead of checking again.
"""
from __future__ import annotations

import threading

from engines import create_engine, engine_class
from engines.numerics import NumericsCheck, NumericsError

__all__ = ["cached_engine", "clear"]

_engines: dict = {}  # (sha256, name, threads) -> the engine, or the NumericsCheck it failed
_lock = threading.Lock()


def cached_engine(sha256: str, load, name: str, threads: int):
    """The engine for ``(sha256, name, threads)``, loading and checking it on first use.

    ``load`` is a zero-argument callable returning the
    :class:`~core.bundle.ModelBundle` (a Spark broadcast's value), called only when
    this worker has no such engine yet, so the bundle bytes are deserialised once.

    Raises
    ------
    NumericsError
        When the engine failed its numerics check here (now or on an earlier call).
    """
    key = (sha256, name, threads)
    with _lock:
        if key not in _engines:
            bundle = load()
            if bundle.sha256 != sha256:
                raise ValueError(f"bundle sha256 {bundle.sha256[:12]} does not match the key {sha256[:12]}")
            needed = engine_class(name).required_files
            try:
                _engines[key] = create_engine(bundle.subset(needed), name, threads=threads)
            except NumericsError as exc:
                _engines[key] = exc.check
        found = _engines[key]
    if isinstance(found, NumericsCheck):
        raise NumericsError(found)
    return found


def clear() -> None:
    with _lock:
        _engines.clear()
