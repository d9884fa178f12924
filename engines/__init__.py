"""Inference engines behind one interface, chosen by name from a registry other code can extend.

Each engine module imports its framework inside itself only, so ``onnxruntime`` users
never import MXNet: the built-in engines are registered by module path and imported on
first use. Other code adds an engine with :func:`register_engine`, as timm registers
models::

    @register_engine("onnxruntime-cuda")
    class CudaEngine(OnnxRuntimeEngine):
        devices = ("cuda",)
        def providers(self):
            return [("CUDAExecutionProvider", {"device_id": int(self.device.partition(":")[2] or 0)})]
"""
from __future__ import annotations

import importlib

from core.errors import TilescanError
from engines.base import Engine
from engines.numerics import NumericsCheck, NumericsError, check_engine

__all__ = ["Engine", "ENGINES", "DEFAULT_ENGINE", "EngineUnavailable", "register_engine", "engine_class",
           "engine_module", "create_engine", "NumericsCheck", "NumericsError"]

#: name -> "module:Class" (imported on first use) or the class itself (registered).
ENGINES: dict = {
    "onnxruntime": "engines.onnx_engine:OnnxRuntimeEngine",
    "mxnet": "engines.mxnet_engine:MxnetEngine",
    "onnxruntime-int8": "engines.onnx_int8:OnnxRuntimeInt8Engine",
}
DEFAULT_ENGINE = "onnxruntime"


class EngineUnavailable(TilescanError):
    """An engine whose framework is not installed here."""


def register_engine(name: str):
    """Class decorator: make an :class:`Engine` subclass available as ``--engine name``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an engine name must be a non-empty string, got {name!r}")

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, Engine)):
            raise TypeError(f"register_engine({name!r}) takes an Engine subclass, got {cls!r}")
        known = ENGINES.get(name)
        if known is not None and known is not cls and known != f"{cls.__module__}:{cls.__qualname__}":
            raise ValueError(f"engine {name!r} is registered already ({known})")
        cls.name = name
        ENGINES[name] = cls
        return cls

    return register


def engine_module(name: str) -> str:
    """The module that defines engine ``name`` (what executors must be able to import)."""
    entry = _entry(name)
    return entry.split(":")[0] if isinstance(entry, str) else entry.__module__


def _entry(name: str):
    if name not in ENGINES:
        raise TilescanError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    return ENGINES[name]


def engine_class(name: str) -> type[Engine]:
    entry = _entry(name)
    if not isinstance(entry, str):
        return entry
    module, cls = entry.split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise EngineUnavailable(f"engine {name!r} is not installed ({exc.name} missing)") from None


def create_engine(bundle, name: str = DEFAULT_ENGINE, *, threads: int = 1, device: str = "cpu",
                  check: bool = True, **options) -> Engine:
    """Load ``bundle`` into the named engine with ``threads`` intra-op threads on ``device``, and
    check its numbers.

    With ``check``, the bundle's golden batch runs through the engine first
    (:func:`engines.numerics.check_engine`); the result is the engine's ``numerics``.
    ``options`` are the engine's own (the ONNX Runtime engine's ``optimization``).

    Raises
    ------
    NumericsError
        When the engine's outputs stray from the float model's further than the bundle allows.
    """
    engine = engine_class(name)(bundle, threads=threads, device=device, **options)
    if check:
        engine.numerics = check_engine(engine, bundle.golden)
        if engine.numerics.failed:
            raise NumericsError(engine.numerics)
    return engine
