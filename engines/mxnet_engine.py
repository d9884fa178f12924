"""MXNet engine: the symbol and params the training pipeline exports."""
from __future__ import annotations

import os

import numpy as np

from engines import EngineUnavailable, register_engine
from engines.base import Engine

__all__ = ["MxnetEngine"]


@register_engine("mxnet")
class MxnetEngine(Engine):
    required_files = ("mxnet-symbol", "mxnet-params")

    def __init__(self, bundle, *, threads: int = 1, device: str = "cpu", **options) -> None:
        super().__init__(bundle, threads=threads, device=device, **options)
        # MXNet sizes its OpenMP pool when it is first imported.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
        try:
            import mxnet as mx
        except ImportError:
            raise EngineUnavailable("--engine mxnet needs MXNet, which is not installed here: pip install "
                                    "'tilescan[train]' (Python 3.10 or 3.11, numpy < 1.24)") from None

        symbol = mx.sym.load_json(bundle.file("mxnet-symbol").decode())
        params = mx.nd.load_frombuffer(bundle.file("mxnet-params"))
        arg_params = {k.split(":", 1)[1]: v for k, v in params.items() if k.startswith("arg:")}
        aux_params = {k.split(":", 1)[1]: v for k, v in params.items() if k.startswith("aux:")}
        if not arg_params and not aux_params:  # Gluon export stores bare names
            arg_params = {k: v for k, v in params.items() if k in symbol.list_arguments()}
            aux_params = {k: v for k, v in params.items() if k in symbol.list_auxiliary_states()}
        self._mx = mx
        self._net = mx.gluon.SymbolBlock(symbol, mx.sym.var("data"))
        for name, param in self._net.collect_params().items():
            source = arg_params.get(name, aux_params.get(name))
            if source is None:
                raise ValueError(f"mxnet params lack {name!r}")
            param._load_init(source, mx.cpu())
        self._net.hybridize(static_alloc=True)

    def forward(self, batch: np.ndarray) -> list:
        outputs = self._net(self._mx.nd.array(batch, dtype="float32"))
        return [out.asnumpy() for out in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
