"""Inference engines behind one interface, chosen by name.

Each engine module imports its framework inside itself only, so ``onnxruntime`` users
never import MXNet.
"""
from __future__ import annotations

import importlib

from core.errors import TilescanError
from engines.base import Engine

__all__ = ["Engine", "ENGINES", "DEFAULT_ENGINE", "engine_class", "create_engine"]

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


def create_engine(bundle, name: str = DEFAULT_ENGINE, *, threads: int = 1) -> Engine:
    """Load ``bundle`` into the named engine with ``threads`` intra-op threads."""
    return engine_class(name)(bundle, threads=threads)
