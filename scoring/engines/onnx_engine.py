"""ONNX Runtime engine (the default)."""
from __future__ import annotations

import numpy as np

from scoring.engines.base import Engine

__all__ = ["OnnxRuntimeEngine"]


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    required_files = ("onnx",)

    def __init__(self, bundle, *, threads: int = 1) -> None:
        super().__init__(bundle, threads=threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Spark already runs one task per core: the engine must not oversubscribe them.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            bundle.file("onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]
