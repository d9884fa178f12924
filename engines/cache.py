"""The engines a Python worker keeps loaded for all the tasks it runs: a few, most recent first.

Spark reuses Python workers between tasks (``spark.python.worker.reuse``), so a model
loaded here is loaded, and its numbers checked (:mod:`engines.numerics`), once per
worker, not once per task. A failed check is kept too: the worker's later tasks fail with
it at once instead of checking again. At most :data:`MAX_ENGINES` are kept (pyspark's
``ModelCache`` keeps 3): a long-lived worker that scores with many bundles does not keep
every model it ever loaded.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from engines import create_engine, engine_class
from engines.numerics import NumericsCheck, NumericsError

__all__ = ["cached_engine", "clear", "MAX_ENGINES"]

MAX_ENGINES = 3
_engines: OrderedDict = OrderedDict()  # (sha256, name, threads, device) -> the engine, or the check it failed
_lock = threading.Lock()


def cached_engine(sha256: str, load, name: str, threads: int, device: str = "cpu"):
    """The engine for ``(sha256, name, threads, device)``, loading and checking it on first use.

    ``load`` is a zero-argument callable returning the
    :class:`~core.bundle.ModelBundle` (a Spark broadcast's value), called only when
    this worker has no such engine yet, so the bundle bytes are deserialised once.

    Raises
    ------
    NumericsError
        When the engine failed its numerics check here (now or on an earlier call).
    """
    key = (sha256, name, threads, device)
    with _lock:
        if key in _engines:
            _engines.move_to_end(key)
        else:
            bundle = load()
            if bundle.sha256 != sha256:
                raise ValueError(f"bundle sha256 {bundle.sha256[:12]} does not match the key {sha256[:12]}")
            needed = engine_class(name).required_files
            try:
                _engines[key] = create_engine(bundle.subset(needed), name, threads=threads, device=device)
            except NumericsError as exc:
                _engines[key] = exc.check
            while len(_engines) > MAX_ENGINES:
                _engines.popitem(last=False)
        found = _engines[key]
    if isinstance(found, NumericsCheck):
        raise NumericsError(found)
    return found


def clear() -> None:
    with _lock:
        _engines.clear()
