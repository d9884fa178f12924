"""Add a statically quantised int8 copy of a bundle's ONNX model to the bundle.

Static quantisation (``onnxruntime.quantization.quantize_static``), calibrated on a few
hundred images of the training distribution, written beside the float model as
``model.int8.onnx`` under the bundle file key ``onnx-int8``; the engine that runs it is
:mod:`engines.onnx_int8`. Its effect on accuracy is measured in BENCHMARKS.md.

Weights are quantised to 7 bits (``reduce_range``) by default. ONNX Runtime's uint8 x
int8 kernels on AVX2, and on AVX-512 without VNNI, add each pair of products in 16 bits:
with full 8-bit weights the pair reaches 2 x 255 x 127 = 64,770 and saturates at 32,767,
so those CPUs answer differently (the default detector agreed with float32 on 0.947 of
CIFAR-10 test windows there, 0.995 with VNNI). With 7-bit weights a pair stays within
2 x 255 x 64 = 32,640, every kernel's integer sums are exact, and the model gives the
same answers, bit for bit, on every x86 CPU, at the same speed.
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from core.bundle import load_bundle, update_model_json
from engines.onnx_int8 import INT8_FILE, INT8_KEY
from training.golden import add_golden_batch

__all__ = ["add_int8_model", "QUANT_FORMATS", "QUANTIZED_OPS"]

logger = logging.getLogger(__name__)

QUANT_FORMATS = ("qdq", "qoperator")
#: Ops stored as int8. The classifier head (Gemm, Softmax) stays float: quantising the
#: probabilities would round them to steps of 1/256 and tie the scores that thresholds
#: and AP rank by, for no measurable speed (one 64 x 3 product per window).
QUANTIZED_OPS = ("Conv", "Add", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten")


class _CalibrationReader:
    """Feeds the network's input (:meth:`core.contract.ModelSpec.network_input`) to the calibrator, then ``None``."""

    def __init__(self, images: np.ndarray, spec, input_name: str, batch_size: int) -> None:
        nchw = images.transpose(0, 3, 1, 2)
        self._batches = [spec.network_input(nchw[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        self._input = input_name
        self._next = 0

    def get_next(self):
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {self._input: self._batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0


def add_int8_model(bundle_dir: str, calibration_images: np.ndarray, *, quant_format: str = "qdq",
                   per_channel: bool = True, reduce_range: bool = True, batch_size: int = 64) -> str:
    """Quantise a bundle's ONNX model to int8 and add it to the bundle as ``onnx-int8``.

    Static quantisation (``onnxruntime.quantization.quantize_static``): batch norms are
    first folded into the convolutions, then activation ranges are calibrated (min/max)
    on ``calibration_images``; weights are int8 (per output channel when
    ``per_channel``; 7-bit when ``reduce_range``), activations uint8. Writes
    ``model.int8.onnx`` into ``bundle_dir`` and rewrites ``model.json`` with the same keys
    plus the new file (and its sha256) and an ``int8`` record of the settings; rerunning
    replaces both. The bundle's golden batch is then made again
    (:func:`training.golden.add_golden_batch`), with a tolerance for this int8 model.

    Parameters
    ----------
    bundle_dir : str
        Local bundle folder (``model.json`` and its files); every file is verified first.
    calibration_images : numpy.ndarray
        ``(N, S, S, 3)`` uint8 RGB images of the training distribution, ``S`` the
        model's input size; a few hundred suffice. Normalised here with the bundle's
        mean and std, exactly as the engines do.
    quant_format : {"qdq", "qoperator"}
        ``qdq``: QuantizeLinear/DequantizeLinear pairs around float ops, fused by ONNX
        Runtime at load; ``qoperator``: QLinearConv and friends written out.
    per_channel : bool
        One weight scale per output channel (better accuracy) instead of per tensor.
    reduce_range : bool
        Weights in [-64, 63] instead of [-128, 127], so that ONNX Runtime's int8 kernels
        compute exactly, and alike, on every x86 CPU (see the module docstring). Turn off
        only for a model that will run on CPUs with VNNI or AMX alone.
    batch_size : int
        Calibration images per inference call.

    Returns
    -------
    str
        The bundle's new id (sha256 of ``model.json``).

    Notes
    -----
    Needs ``onnxruntime.quantization`` (which imports ``onnx`` and ``ml_dtypes``); the
    engine that runs the result needs only ``onnxruntime``.
    """
    if not isinstance(bundle_dir, (str, os.PathLike)) or not os.path.isdir(bundle_dir):
        raise ValueError(f"`bundle_dir` must be a local bundle folder, got {bundle_dir!r}")
    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"`quant_format` must be one of {', '.join(QUANT_FORMATS)}, got {quant_format!r}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    bundle = load_bundle(str(bundle_dir))
    size = bundle.spec.size
    images = np.asarray(calibration_images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3) or not len(images):
        raise ValueError(f"`calibration_images` must be uint8 (N >= 1, {size}, {size}, 3), "
                         f"got {images.dtype} {images.shape}")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="tilescan-int8-") as tmp:
        source, folded, quantised = (os.path.join(tmp, name) for name in ("float.onnx", "folded.onnx", "int8.onnx"))
        with open(source, "wb") as fh:
            fh.write(bundle.file("onnx"))
        # Folding batch norms into the convolutions first gives one range per conv output
        # instead of one before and one after the batch norm. Shapes are static but for
        # the batch, so ONNX's own shape inference suffices (no sympy).
        quant_pre_process(source, folded, skip_symbolic_shape=True)
        import onnx

        input_name = onnx.load(folded).graph.input[0].name
        reader = _CalibrationReader(images, bundle.spec, input_name, batch_size)
        quantize_static(
            folded, quantised, reader,
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=list(QUANTIZED_OPS), per_channel=per_channel, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        with open(quantised, "rb") as fh:
            data = fh.read()
    with open(os.path.join(bundle_dir, INT8_FILE), "wb") as fh:
        fh.write(data)
    record = {"file": INT8_KEY, "method": "onnxruntime.quantization.quantize_static",
              "format": quant_format, "per_channel": per_channel, "calibrate": "minmax",
              "activations": "uint8", "weights": "int8, 7-bit range" if reduce_range else "int8",
              "reduce_range": reduce_range, "ops": list(QUANTIZED_OPS), "calibration_images": int(len(images))}
    update_model_json(str(bundle_dir), files={INT8_KEY: INT8_FILE}, int8=record)
    logger.info("added %s (%s, %d calibration images) to %s", INT8_FILE, quant_format, len(images), bundle_dir)
    return add_golden_batch(str(bundle_dir))
