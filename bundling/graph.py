"""What an ONNX graph says of its input and outputs, read from the file, its external weights folded in."""
from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import BundleError

__all__ = ["GraphInput", "read_onnx", "MAX_INLINE_BYTES"]

#: A protobuf message, hence one ONNX file, holds at most 2 GiB.
MAX_INLINE_BYTES = 2 ** 31 - 1
_DTYPES = {1: "float32", 2: "uint8"}  # onnx.TensorProto.FLOAT, UINT8


@dataclass(frozen=True)
class GraphInput:
    """The graph's one input and its outputs, as far as the graph fixes them (``None``: left open).

    ``layout`` is ``NCHW`` or ``NHWC`` where the axis of 3 channels says which; ``batch`` is
    the batch axis's size when fixed; ``classes`` the first output's last axis when fixed.
    """

    name: str
    dims: tuple
    dtype: str | None
    layout: str | None
    size: int | None
    batch: int | None
    outputs: tuple[str, ...]
    classes: int | None


def read_onnx(path: str) -> tuple[bytes, GraphInput]:
    """The model as one self-contained ONNX file's bytes, and what its graph says.

    Raises
    ------
    BundleError
        When the file is missing or not ONNX, its external weights are missing, it takes
        other than one input, or it is too large for one file.
    """
    try:
        import onnx
    except ImportError:
        raise BundleError("making a bundle needs the onnx package: pip install 'tilescan[bundle]'") from None
    if not os.path.isfile(path):
        raise BundleError(f"--onnx {path}: no such file")
    try:
        model = onnx.load(path, load_external_data=True)  # .onnx.data beside it, as PyTorch writes it
    except FileNotFoundError as exc:
        raise BundleError(f"--onnx {path}: its weights are in a separate file that is not beside it "
                          f"({os.path.basename(exc.filename or '?')})") from None
    except Exception as exc:  # noqa: BLE001 - protobuf's own errors for a file that is not ONNX
        raise BundleError(f"--onnx {path} is not an ONNX model ({type(exc).__name__})") from None
    if model.ByteSize() > MAX_INLINE_BYTES:
        raise BundleError(f"--onnx {path}: the model with its weights is over 2 GiB, more than one ONNX file holds")
    weights = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise BundleError(f"--onnx {path}: the graph takes {len(inputs)} inputs "
                          f"({', '.join(v.name for v in inputs)}); tilescan feeds one batch of windows")
    tensor = inputs[0].type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
    layout = size = None
    if len(dims) == 4:
        if dims[1] == 3 and dims[3] != 3:
            layout, spatial = "NCHW", dims[2:]
        elif dims[3] == 3 and dims[1] != 3:
            layout, spatial = "NHWC", dims[1:3]
        else:
            spatial = ()
        if len(spatial) == 2 and all(isinstance(d, int) for d in spatial):
            if spatial[0] != spatial[1]:
                raise BundleError(f"--onnx {path}: the graph takes {spatial[1]}x{spatial[0]} windows; only square "
                                  "windows are supported")
            size = spatial[0]
    first = model.graph.output[0].type.tensor_type.shape.dim if model.graph.output else ()
    classes = first[-1].dim_value if first and first[-1].HasField("dim_value") else None
    batch = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else None
    info = GraphInput(inputs[0].name, dims, _DTYPES.get(tensor.elem_type), layout, size, batch,
                      tuple(out.name for out in model.graph.output), classes)
    return model.SerializeToString(), info
