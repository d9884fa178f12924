"""ONNX Runtime on the bundle's int8 copy of the model.

A bundle gains the int8 model with :func:`training.quantize.add_int8_model` (static
quantisation, calibrated on images of the training distribution), written beside the
float model as ``model.int8.onnx`` under the bundle file key ``onnx-int8``.
"""
from __future__ import annotations

from engines.onnx_engine import OnnxRuntimeEngine

__all__ = ["OnnxRuntimeInt8Engine", "INT8_KEY", "INT8_FILE"]

INT8_KEY = "onnx-int8"
INT8_FILE = "model.int8.onnx"


class OnnxRuntimeInt8Engine(OnnxRuntimeEngine):
    """The ONNX Runtime engine, session settings unchanged, on the bundle's ``onnx-int8`` file."""

    name = "onnxruntime-int8"
    precision = "int8"
    required_files = (INT8_KEY,)
    model_file = INT8_KEY
