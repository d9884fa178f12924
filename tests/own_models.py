"""Models nobody here trained, built as their makers' exporters write them: what a user brings.

:func:`foreign_cnn` writes a small CNN with the graph PyTorch's ``torch.onnx.export`` gives
(input ``input``, a ``batch_size`` axis unless fixed, Conv/Relu/MaxPool/GlobalAveragePool/
Gemm, logits out, weights in a ``.onnx.data`` file beside it by default), or, with
``layout="NHWC"``, the graph tf2onnx gives a Keras model (an NHWC input, transposed first).
The weights are random and fixed by ``seed``; the graph is built with ``onnx.helper``, so
the tests need no PyTorch (a test in test_own_model.py runs PyTorch's own export where
PyTorch is installed).
"""
from __future__ import annotations

import os

import numpy as np


def foreign_cnn(path, *, size: int = 64, classes: int = 3, layout: str = "NCHW", batch="batch_size",
                softmax: bool = False, external: bool = True, batch_dependent: bool = False, uint8: bool = False,
                seed: int = 0) -> str:
    """Write the model to ``path`` (and ``path + ".data"`` when ``external``); returns ``path``.

    ``batch`` names the dynamic batch axis, or is an int for a fixed one. ``softmax`` ends the
    graph in a softmax (probabilities out). ``batch_dependent`` subtracts the batch's mean
    input first, as a network exported in training mode would depend on its batch.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    nodes, first = [], "input"
    if uint8:  # the graph normalises its own 8-bit input, as exporters with a preprocessing layer do
        nodes += [helper.make_node("Cast", ["input"], ["as_float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["as_float", "scale"], ["scaled"])]
        first = "scaled"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [first], ["nchw"], perm=[0, 3, 1, 2]))
        first = "nchw"
    if batch_dependent:
        nodes += [helper.make_node("ReduceMean", [first], ["batch_mean"], axes=[0], keepdims=1),
                  helper.make_node("Sub", [first, "batch_mean"], ["centred"])]
        first = "centred"
    nodes += [
        helper.make_node("Conv", [first, "conv1.weight", "conv1.bias"], ["c1"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["probabilities" if softmax else "logits"],
                         transB=1),
    ]
    out_name = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["probabilities"], ["output"], axis=1))
        out_name = "output"
    weights = [weight("conv1.weight", (8, 3, 3, 3), 0.4), weight("conv1.bias", (8,), 0.1),
               weight("conv2.weight", (16, 8, 3, 3), 0.3), weight("conv2.bias", (16,), 0.1),
               weight("fc.weight", (classes, 16), 0.25), weight("fc.bias", (classes,), 0.3)]
    if uint8:
        weights.append(numpy_helper.from_array(np.array(1 / 64, np.float32), "scale"))
    graph = helper.make_graph(
        nodes, "foreign_cnn",
        [helper.make_tensor_value_info("input", TensorProto.UINT8 if uint8 else TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, classes])],
        initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = str(path)
    if external:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=0)
    else:
        onnx.save_model(model, path)
    return path


def onnxruntime_outputs(path: str, batch: np.ndarray) -> np.ndarray:
    """The model's own first output on ``batch`` through a plain ONNX Runtime session, as its maker runs it."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name, fixed = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
    if not isinstance(fixed, int):
        return session.run(None, {name: batch})[0]
    return np.concatenate([session.run(None, {name: batch[k:k + fixed]})[0] for k in range(0, len(batch), fixed)])


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def imagenet_input(windows: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """``(N, 3, S, S)`` uint8 RGB windows as torchvision's ``ToTensor`` + ``Normalize(imagenet)`` give them."""
    x = windows.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
    return np.ascontiguousarray(x if layout == "NCHW" else x.transpose(0, 2, 3, 1))
