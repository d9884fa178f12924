"""Export a trained Gluon network as a model bundle: MXNet symbol + params, ONNX, model.json.

The ONNX graph's outputs are named ``probabilities`` and, for a detector, ``boxes``.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import mxnet as mx
import numpy as np

from core.bundle import ModelSpec, write_model_json
from tiling.box import BOX_ENCODING
from training.golden import add_golden_batch
from training.resnet import ProbabilityHead, build_resnet
from training.valid_net import OUTPUT_STRIDE, DenseProbabilityHead, ValidConvNet, build_valid_net

__all__ = ["export_bundle", "random_bundle", "mxnet_to_onnx", "SYMBOL_FILE", "PARAMS_FILE", "ONNX_FILE"]

SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
ONNX_FILE = "model.onnx"


#: The ONNX output names, in the bundle's output order.
OUTPUT_NAMES = ("probabilities", "boxes")


def _rename_outputs(model, names) -> None:
    """Give the graph's outputs ``names``, in order, and rewire the nodes that produce them."""
    renames = {out.name: name for out, name in zip(model.graph.output, names)}
    for node in model.graph.node:
        for i, produced in enumerate(node.output):
            if produced in renames:
                node.output[i] = renames[produced]
    for out in model.graph.output:
        out.name = renames.get(out.name, out.name)


def mxnet_to_onnx(symbol_path: str, params_path: str, onnx_path: str, size: int, *, dense: bool = False) -> None:
    """Convert an MXNet symbol and params (NCHW float32, ``size`` x ``size`` input) to ONNX with a
    dynamic batch axis and outputs named :data:`OUTPUT_NAMES`; with ``dense`` (a padding-free
    network whose outputs are maps), dynamic height and width too, in and out."""
    import onnx
    from mxnet import onnx as mx_onnx

    # MXNet's exporter cannot trace a dynamic batch, so trace batch 1 and then name the
    # batch dimension; nothing in a CIFAR ResNet depends on the batch size.
    mx_onnx.export_model(symbol_path, params_path, [(1, 3, size, size)], [np.float32], onnx_path)
    model = onnx.load(onnx_path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    if dense:  # convolutions, poolings and a softmax over the class axis: nothing fixes the map's size
        for value, names in [(v, ("height", "width")) for v in model.graph.input] + \
                            [(v, ("rows", "columns")) for v in model.graph.output]:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 4:
                raise ValueError(f"a dense network's {value.name} must have four axes, got {len(dims)}")
            dims[2].dim_param, dims[3].dim_param = names
    _rename_outputs(model, OUTPUT_NAMES)
    onnx.checker.check_model(model)
    onnx.save(model, onnx_path)


def export_bundle(net, spec: ModelSpec, out_dir: str, *, extra: dict | None = None) -> str:
    """Write ``net`` (logits, initialised) as a bundle into local folder ``out_dir``.

    The exported graphs end in a softmax, so every engine outputs probabilities; a network
    with a box head (``spec.boxes`` set) outputs its box deltas second. The bundle gets its
    golden batch (:func:`training.golden.add_golden_batch`).
    Returns the bundle id (sha256 of ``model.json``).
    """
    if bool(getattr(net, "boxes", False)) != bool(spec.boxes):
        raise ValueError(f"the network {'has' if net.boxes else 'has no'} box head but spec.boxes is {spec.boxes!r}")
    dense = isinstance(net, ValidConvNet)
    if dense != bool(spec.dense_stride):
        raise ValueError(f"spec.dense_stride is {spec.dense_stride!r} for a {type(net).__name__}")
    os.makedirs(out_dir, exist_ok=True)
    # A padding-free network keeps its outputs as maps, so the graph scores a band of any size.
    head = DenseProbabilityHead(net) if dense else ProbabilityHead(net)
    head.hybridize()
    head(mx.nd.zeros((1, 3, spec.size, spec.size)))
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "model")
        head.export(prefix, epoch=0)
        for name in (SYMBOL_FILE, PARAMS_FILE):
            shutil.copyfile(os.path.join(tmp, name), os.path.join(out_dir, name))
    mxnet_to_onnx(
        os.path.join(out_dir, SYMBOL_FILE),
        os.path.join(out_dir, PARAMS_FILE),
        os.path.join(out_dir, ONNX_FILE),
        spec.size,
        dense=dense,
    )
    files = {"onnx": ONNX_FILE, "mxnet-symbol": SYMBOL_FILE, "mxnet-params": PARAMS_FILE}
    write_model_json(out_dir, spec, files, extra=extra)
    return add_golden_batch(out_dir)


def random_bundle(out_dir: str, *, depth: int = 8, width: int = 4, seed: int = 0,
                  classes=("car", "boat", "background"), boxes: bool = False, dense: bool = False,
                  widths: tuple | None = None) -> str:
    """A small random-weights bundle for tests: real architecture, untrained weights (with the
    box head when ``boxes``); ``dense``: the padding-free detector (:mod:`training.valid_net`)
    at ``widths`` (default ``width``, ``2 * width``, ``4 * width``), which has the box head."""
    mx.random.seed(seed)
    np.random.seed(seed)
    dense_name = f"random-validnet-{'-'.join(map(str, widths))}" if widths else f"random-validnet-w{width}"
    if dense:
        net = build_valid_net(classes=len(classes), widths=tuple(widths or (width, 2 * width, 4 * width)))
    else:
        net = build_resnet(depth, classes=len(classes), width=width, boxes=boxes)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    net(mx.nd.zeros((1, 3, 32, 32)))
    # Random BN statistics, so that inference-mode normalisation is really exercised.
    for name, param in net.collect_params().items():
        if name.endswith("running_mean"):
            param.set_data(mx.nd.array(np.random.uniform(-0.1, 0.1, param.shape)))
        elif name.endswith("running_var"):
            param.set_data(mx.nd.array(np.random.uniform(0.5, 1.5, param.shape)))
    spec = ModelSpec(
        name=dense_name if dense else f"random-resnet{depth}-w{width}{'-boxes' * boxes}",
        classes=tuple(classes),
        size=32,
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        boxes=BOX_ENCODING if boxes or dense else None,
        dense_stride=OUTPUT_STRIDE if dense else None,
    )
    return export_bundle(net, spec, out_dir, extra={"note": "random weights, for tests"})
