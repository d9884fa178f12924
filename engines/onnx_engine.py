"""ONNX Runtime engine (the default)."""
from __future__ import annotations

import numpy as np

from engines.base import Engine

__all__ = ["OnnxRuntimeEngine", "OPTIMIZATION_LEVELS"]

#: ONNX Runtime's graph optimisation levels, by name; ``all`` is the default.
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime on the CPU, one session per engine.

    ``optimization`` names the graph optimisation level (:data:`OPTIMIZATION_LEVELS`).
    """

    name = "onnxruntime"
    required_files = ("onnx",)
    model_file = "onnx"

    def __init__(self, bundle, *, threads: int = 1, optimization: str = "all") -> None:
        super().__init__(bundle, threads=threads)
        import onnxruntime as ort

        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"`optimization` must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
        level = ort.GraphOptimizationLevel
        levels = dict(zip(OPTIMIZATION_LEVELS, (level.ORT_DISABLE_ALL, level.ORT_ENABLE_BASIC,
                                                level.ORT_ENABLE_EXTENDED, level.ORT_ENABLE_ALL)))

        options = ort.SessionOptions()
        # Spark already runs one task per core: the engine must not oversubscribe them.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = levels[optimization]
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            bundle.file(self.model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def forward(self, batch: np.ndarray) -> list:
        return self._session.run(None, {self._input: batch})
