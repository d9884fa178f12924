"""Inference engines behind one interface, chosen by name.

Each engine module imports its framework inside itself only, so ``onnxruntime`` users
never import MXNet.
"""
from __future__ import annotations

import importlib

from core.errors import TilescanError
from engines.base import Engine
from engines.numerics import NumericsCheck, NumericsError, check_engine

__all__ = ["Engine", "ENGINES", "DEFAULT_ENGINE", "engine_class", "create_engine", "NumericsCheck", "NumericsError"]

#: name -> "module:class", imported on first use.
ENGINES = {
    "onnxruntime": "engines.onnx_engine:OnnxRuntimeEngine",
    "mxnet": "engines.mxnet_engine:MxnetEngine",
    "onnxruntime-int8": "engines.onnx_int8:OnnxRuntimeInt8Engine",
}
DEFAULT_ENGINE = "onnxruntime"


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise TilescanError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise TilescanError(f"engine {name!r} is not installed ({exc.name} missing)") from None


def create_engine(bundle, name: str = DEFAULT_ENGINE, *, threads: int = 1, check: bool = True) -> Engine:
    """Load ``bundle`` into the named engine with ``threads`` intra-op threads, and check its numbers.

    With ``check``, the bundle's golden batch runs through the engine first
    (:func:`engines.numerics.check_engine`); the result is the engine's ``numerics``.

    Raises
    ------
    NumericsError
        When the engine's outputs stray from the float model's further than the bundle allows.
    """
    engine = engine_class(name)(bundle, threads=threads)
    if check:
        engine.numerics = check_engine(engine, bundle.golden)
        if engine.numerics.failed:
            raise NumericsError(engine.numerics)
    return engine
