"""Making a model bundle from a user's own model, checking one, and quantising it on the user's pictures.

:func:`create_bundle` takes an ONNX file (its external ``.onnx.data`` weights folded in) or
an MXNet symbol and params, reads from the graph what it says of its input, and writes a
bundle with its contract, sha256s, golden batch and a model card skeleton, after the
self-check passes. :func:`check_bundle` runs every engine the bundle has through its
checks. :func:`quantize_bundle` adds an int8 copy calibrated on windows of the user's own
pictures and recommends it only where it agrees with the float model.
"""
from __future__ import annotations

from bundling.check import check_bundle
from bundling.create import create_bundle
from bundling.graph import GraphInput, read_onnx
from bundling.quantize import QuantizeReport, quantize_bundle

__all__ = ["create_bundle", "check_bundle", "read_onnx", "GraphInput", "quantize_bundle", "QuantizeReport"]
