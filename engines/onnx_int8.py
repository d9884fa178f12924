"""ONNX Runtime on the bundle's int8 copy of the model.

A bundle gains the int8 model with :func:`training.quantize.add_int8_model` (static
quantisation, calibrated on images of the training distribution, 7-bit weights so that
ONNX Runtime's kernels add exactly on every x86 CPU), written beside the float model as
``model.int8.onnx`` under the bundle file key ``onnx-int8``. Its golden-batch tolerance is
the bundle's ``int8`` one (:mod:`engines.numerics`).
"""
from __future__ import annotations

from engines import register_engine
from engines.onnx_engine import OnnxRuntimeEngine

__all__ = ["OnnxRuntimeInt8Engine", "INT8_KEY", "INT8_FILE"]

INT8_KEY = "onnx-int8"
INT8_FILE = "model.int8.onnx"


@register_engine("onnxruntime-int8")
class OnnxRuntimeInt8Engine(OnnxRuntimeEngine):
    """The ONNX Runtime engine, session settings unchanged, on the bundle's ``onnx-int8`` file."""

    precision = "int8"
    required_files = (INT8_KEY,)
    model_file = INT8_KEY
