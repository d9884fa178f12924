"""ONNX Runtime engine (the default)."""
from __future__ import annotations

import numpy as np

from core.errors import BundleError
from engines import register_engine
from engines.base import Engine

__all__ = ["OnnxRuntimeEngine", "OPTIMIZATION_LEVELS", "graph_contract_error", "external_data_files"]

#: ONNX Runtime's graph optimisation levels, by name; ``all`` is the default.
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
_ORT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}


@register_engine("onnxruntime")
class OnnxRuntimeEngine(Engine):
    """ONNX Runtime, one session per engine.

    ``optimization`` names the graph optimisation level (:data:`OPTIMIZATION_LEVELS`).
    A subclass for another device overrides :meth:`providers` (and :attr:`devices`), and
    :meth:`configure` for session options of its own.
    """

    required_files = ("onnx",)
    model_file = "onnx"

    def __init__(self, bundle, *, threads: int = 1, device: str = "cpu", optimization: str = "all",
                 **options) -> None:
        super().__init__(bundle, threads=threads, device=device, **options)
        import onnxruntime as ort

        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"`optimization` must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
        level = ort.GraphOptimizationLevel
        levels = dict(zip(OPTIMIZATION_LEVELS, (level.ORT_DISABLE_ALL, level.ORT_ENABLE_BASIC,
                                                level.ORT_ENABLE_EXTENDED, level.ORT_ENABLE_ALL)))
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[optimization]
        options.log_severity_level = 3
        self.configure(options)
        model = bundle.file(self.model_file)
        try:
            self._session = ort.InferenceSession(model, sess_options=options, providers=self.providers())
        except Exception:  # noqa: BLE001 - onnxruntime raises its own types; say what is wrong where we can
            external = external_data_files(model)
            if external:
                raise BundleError(
                    f"its ONNX model keeps its weights in a separate file "
                    f"({external[0]}: PyTorch's default export); make the bundle with `tilescan-bundle create "
                    "--onnx MODEL.onnx`, which folds them into the one file") from None
            raise
        problem = graph_contract_error(self._session, self.spec)
        if problem:
            raise BundleError(problem)
        self._input = self._session.get_inputs()[0].name
        batch = self._session.get_inputs()[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def configure(self, options) -> None:
        """Set this engine's ``onnxruntime.SessionOptions`` before the session is made."""
        import onnxruntime as ort

        # Spark already runs one task per core: the engine must not oversubscribe them.
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

    def providers(self) -> list:
        """ONNX Runtime's execution providers for this engine's device."""
        return ["CPUExecutionProvider"]

    def forward(self, batch: np.ndarray) -> list:
        return self._session.run(None, {self._input: batch})


def graph_contract_error(session, spec) -> str | None:
    """What in an ONNX graph's declared inputs and outputs contradicts the model contract, in one
    line with the remedy; ``None`` when nothing does (dimensions the graph leaves open are
    checked by running a batch: :mod:`engines.self_check`)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        return (f"the ONNX graph takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); tilescan feeds "
                "one batch of windows")
    shape, kind = list(inputs[0].shape), inputs[0].type
    if _ORT_TYPES.get(kind) != spec.dtype:
        return (f"the ONNX graph's input is {kind}, but model.json declares input.dtype {spec.dtype}"
                + ("" if kind not in _ORT_TYPES else f"; declare {_ORT_TYPES[kind]}"))
    declared = list(spec.input_shape[1:])
    if len(shape) != 4:
        return f"the ONNX graph's input has shape {_shape(shape)}; a batch of windows needs four axes"
    given = shape[1:]
    if not all(g == d for g, d in zip(given, declared) if isinstance(g, int)):
        other = "NHWC" if spec.layout == "NCHW" else "NCHW"
        other_shape = [spec.size, spec.size, 3] if other == "NHWC" else [3, spec.size, spec.size]
        sizes = [g for g, d in zip(given, declared) if isinstance(g, int) and g != 3]
        hint = (f"declare input.layout {other}" if all(g == d for g, d in zip(given, other_shape) if isinstance(g, int))
                else f"the graph takes {sizes[0]}x{sizes[0]} windows: declare input.size {sizes[0]}" if sizes
                else "export the model for 3-channel windows")
        return (f"the ONNX graph's input is {_shape(shape)}, but model.json declares {spec.layout} "
                f"{_shape(['N', *declared])}; {hint}")
    needed = 2 if spec.boxes else 1
    if len(outputs) < needed:
        return (f"the ONNX graph has {len(outputs)} output(s), but model.json declares class scores and box deltas "
                "(two outputs)")
    columns = outputs[0].shape[-1] if outputs[0].shape else None
    if isinstance(columns, int) and columns != len(spec.classes):
        return (f"the ONNX graph outputs {columns} class scores per window, but model.json names "
                f"{len(spec.classes)} classes ({', '.join(spec.classes)})")
    return None


def _shape(dims) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "N" if i == 0 else str(d or "?")
                           for i, d in enumerate(dims)) + ")"


def external_data_files(model: bytes) -> list[str]:
    """The files an ONNX model keeps its weights in besides itself (``[]`` when none, or when
    the bytes are no ONNX model)."""
    try:
        import onnx
        from onnx.external_data_helper import uses_external_data
    except ImportError:
        return []
    try:
        proto = onnx.load_model_from_string(model)
    except Exception:  # noqa: BLE001 - not an ONNX model at all: the caller's error stands
        return []
    found = []
    for tensor in proto.graph.initializer:
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            if location not in found:
                found.append(location)
    return found
