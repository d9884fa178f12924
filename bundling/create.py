"""Write a bundle for a user's own model: one ONNX file, its contract, sha256s, golden batch, card.

Nothing half-made is left looking like a bundle: everything is written into a folder
beside ``out``, checked there (the self-check on real batches, then the golden batch
and the numerics check), and moved into place last.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

from core.bundle import load_bundle, write_model_json
from core.contract import NORMALISATIONS, ModelSpec
from core.errors import BundleError, TilescanError
from engines import create_engine
from engines.preflight import preflight
from engines.self_check import self_check
from tiling.box import BOX_ENCODING
from training.golden import add_golden_batch

__all__ = ["create_bundle", "Created", "parse_normalisation", "ONNX_FILE", "CARD_FILE"]

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
CARD_FILE = "MODEL.md"


@dataclass(frozen=True)
class Created:
    """What :func:`create_bundle` wrote and found: the bundle's id, its contract, the checks' lines."""

    out: str
    sha256: str
    spec: ModelSpec
    lines: tuple[str, ...]


def parse_normalisation(text, pixel_scale: str, name: str) -> tuple[float, float, float]:
    """``--mean``/``--std`` as three numbers (or one for all channels), or a named set
    (:data:`core.contract.NORMALISATIONS`, scaled by 255 for ``pixel_scale`` ``0-255``)."""
    if isinstance(text, (tuple, list)):
        values = [float(v) for v in text]
    else:
        key = str(text).strip().lower()
        if key in NORMALISATIONS:
            mean, std = NORMALISATIONS[key]
            scale = 255.0 if pixel_scale == "0-255" else 1.0
            return tuple(v * scale for v in (mean if name == "mean" else std))
        try:
            values = [float(v) for v in key.split(",")]
        except ValueError:
            raise TilescanError(f"--{name} must be three numbers, one number, or one of "
                                f"{', '.join(NORMALISATIONS)}; got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise TilescanError(f"--{name} needs 1 or 3 numbers, got {len(values)}")
    return tuple(values)


def _agree(option: str, given, found, remedy: str):
    """The value the graph fixes, or the one given where it does not; a contradiction is an error."""
    if found is None:
        if given is None:
            raise TilescanError(f"the graph does not say its {option.lstrip('-')}: {remedy}")
        return given
    if given is not None and given != found:
        raise TilescanError(f"{option} {given} contradicts the graph, which takes {found}")
    return found


def create_bundle(out: str, *, classes, background: str, onnx: str | None = None,
                  mxnet_symbol: str | None = None, mxnet_params: str | None = None, output: str = "probabilities",
                  mean="none", std="none", pixel_scale: str = "0-1", layout: str | None = None,
                  size: int | None = None, dtype: str | None = None, channel_order: str = "RGB",
                  name: str | None = None, boxes: bool = False, dense_stride: int | None = None,
                  batch_size: int = 128, overwrite: bool = False) -> Created:
    """Make the local bundle folder ``out`` from an ONNX file, or from an MXNet symbol and params.

    Parameters
    ----------
    out : str
        The bundle folder to write; refused when it exists, unless ``overwrite``.
    classes, background
        The class names in the order of the model's outputs, and which of them is background.
    onnx : str
        An ONNX file; a ``.onnx.data`` file of external weights beside it is folded in.
    mxnet_symbol, mxnet_params : str
        Instead of ``onnx``: an MXNet symbol JSON and params file (NCHW float32, ``size``
        given), converted to ONNX; the bundle keeps both for ``--engine mxnet``.
    output, mean, std, pixel_scale, layout, size, dtype, channel_order
        The contract (:class:`core.contract.ModelSpec`); ``layout``, ``size`` and ``dtype``
        are read from the graph where it fixes them, and must agree with it where given.
    boxes : bool
        The model's second output is box deltas in :data:`tiling.box.BOX_ENCODING`.
    dense_stride : int, optional
        A padding-free network that scores a whole band at once, every window at this stride
        (:class:`core.contract.ModelSpec`); proved exact by the self-check before anything is kept.
    batch_size : int
        The batch the self-check runs (the run's ``--batch-size``).

    Raises
    ------
    TilescanError
        One line, for bad options or a model that does not keep the contract; nothing is written.
    """
    if (onnx is None) == (mxnet_symbol is None and mxnet_params is None):
        raise TilescanError("give either --onnx MODEL.onnx or --mxnet-symbol and --mxnet-params")
    if onnx is None and (mxnet_symbol is None or mxnet_params is None):
        raise TilescanError("an MXNet model needs both --mxnet-symbol and --mxnet-params")
    classes = tuple(c.strip() for c in (classes.split(",") if isinstance(classes, str) else classes))
    out = os.path.abspath(out)
    if os.path.exists(out) and not overwrite and (not os.path.isdir(out) or os.listdir(out)):
        raise TilescanError(f"--out {out} exists; choose a new folder or pass --overwrite")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}-", dir=parent)
    try:
        files, spec, source = _write_model(staging, onnx=onnx, mxnet_symbol=mxnet_symbol, mxnet_params=mxnet_params,
                                           classes=classes, background=background, output=output, mean=mean,
                                           std=std, pixel_scale=pixel_scale, layout=layout, size=size, dtype=dtype,
                                           channel_order=channel_order, name=name, boxes=boxes,
                                           dense_stride=dense_stride)
        write_model_json(staging, spec, files, extra={"source": source})
        # The contract first, on real batches: a golden batch of a model read wrongly would be wrong too.
        self_check(create_engine(load_bundle(staging), "onnxruntime", check=False), batch_size)
        add_golden_batch(staging)
        bundle = load_bundle(staging)
        lines = [_check_line(preflight(bundle, "onnxruntime", batch_size=batch_size))]
        _write_card(staging, bundle.spec, source)
        if os.path.exists(out):
            shutil.rmtree(out) if os.path.isdir(out) else os.remove(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Created(out, load_bundle(out).sha256, spec, tuple(lines))


def _write_model(folder: str, *, onnx, mxnet_symbol, mxnet_params, classes, background, output, mean, std,
                 pixel_scale, layout, size, dtype, channel_order, name, boxes,
                 dense_stride) -> tuple[dict, ModelSpec, dict]:
    """The model file(s) written into ``folder``, their file table, the contract and where they came from."""
    from bundling.graph import read_onnx

    files = {"onnx": ONNX_FILE}
    if onnx is None:
        if size is None:
            raise TilescanError("an MXNet model needs --size (its input side in pixels)")
        from training.export import PARAMS_FILE, SYMBOL_FILE, mxnet_to_onnx

        shutil.copyfile(mxnet_symbol, os.path.join(folder, SYMBOL_FILE))
        shutil.copyfile(mxnet_params, os.path.join(folder, PARAMS_FILE))
        mxnet_to_onnx(os.path.join(folder, SYMBOL_FILE), os.path.join(folder, PARAMS_FILE),
                      os.path.join(folder, ONNX_FILE), size, dense=dense_stride is not None)
        files.update({"mxnet-symbol": SYMBOL_FILE, "mxnet-params": PARAMS_FILE})
        source = {"mxnet_symbol": os.path.basename(mxnet_symbol), "mxnet_params": os.path.basename(mxnet_params)}
        data, graph = read_onnx(os.path.join(folder, ONNX_FILE))
    else:
        data, graph = read_onnx(onnx)
        with open(os.path.join(folder, ONNX_FILE), "wb") as fh:
            fh.write(data)
        source = {"onnx": os.path.basename(onnx)}
    layout = _agree("--layout", layout, graph.layout, "give --layout NCHW or NHWC")
    size = _agree("--size", size, graph.size, "give --size (the window side in pixels)")
    dtype = _agree("--dtype", dtype, graph.dtype, "give --dtype float32 or uint8")
    # A dense graph's outputs end in the map's columns, not the classes.
    if graph.classes is not None and graph.classes != len(classes) and dense_stride is None:
        raise BundleError(f"the graph outputs {graph.classes} class scores per window, but --classes names "
                          f"{len(classes)} ({', '.join(classes)})")
    if dtype == "uint8":
        mean, std, pixel_scale = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "0-255"
    else:
        mean, std = parse_normalisation(mean, pixel_scale, "mean"), parse_normalisation(std, pixel_scale, "std")
    spec = ModelSpec(name=name or os.path.splitext(os.path.basename(onnx or mxnet_symbol))[0], classes=classes,
                     size=int(size), mean=mean, std=std, background=background, channel_order=channel_order,
                     boxes=BOX_ENCODING if boxes else None, pixel_scale=pixel_scale, layout=layout, dtype=dtype,
                     output=output, dense_stride=dense_stride)
    source.update(graph_input=graph.name, graph_outputs=list(graph.outputs),
                  batch_axis="dynamic" if graph.batch is None else f"fixed at {graph.batch}")
    return files, spec, source


def _check_line(checked) -> str:
    fixed, dense = checked.self_check.fixed_batch, checked.self_check.dense
    return (f"{checked.numerics.summary()}; self-check on batches of "
            f"{' and '.join(map(str, checked.self_check.batch_sizes))} passed"
            + (f" (the graph's batch axis is fixed at {fixed}: re-export it with a dynamic one for speed)"
               if fixed else "") + (f"; {dense.summary()}" if dense else ""))


def _write_card(folder: str, spec: ModelSpec, source: dict) -> None:
    """A model card skeleton: what the bundle declares, and the sections only its maker can fill."""
    contract = spec.to_json()["input"]
    normalisation = ("the pixels as they are (uint8; the graph normalises them)" if spec.dtype == "uint8" else
                     f"`(pixel{' / 255' if spec.pixel_scale == '0-1' else ''} - mean) / std`, mean "
                     f"{[round(v, 6) for v in spec.mean]}, std {[round(v, 6) for v in spec.std]}")
    made_from = ", ".join(f"`{v}`" for k, v in source.items() if k in ("onnx", "mxnet_symbol", "mxnet_params"))
    boxes = "; box deltas second" if spec.boxes else ""
    dense = (f"\n- Dense: scores a whole band at once, every window at stride {spec.dense_stride}; checked exact on a "
             "probe band." if spec.dense_stride else "")
    text = f"""# {spec.name}

Made with `tilescan-bundle create` from {made_from}.
The sections marked *to fill* are for the model's maker.

## Contract

- Input: {spec.size}x{spec.size} windows, {contract['layout']} {contract['dtype']}, channels {spec.channel_order},
  {normalisation}.
- Output: {spec.output} over {', '.join(spec.classes)} (background: {spec.background}){boxes}.
- Batch axis: {source['batch_axis']}.{dense}
- Checked when made: a batch of windows and a batch of one through ONNX Runtime; every engine checks the
  golden batch (`golden.npz`) as it loads.

## Intended use

*To fill*: what pictures, at what ground resolution, for what decisions.

## Training data

*To fill*: where the training windows came from, and at what scale. A model trained on objects of one size
finds little in pictures where they appear at another: score at the scale it was trained at.

## Evaluation

*To fill*: held-out results. `python -m app.quantize --model DIR --calibration PICTURES` records how an int8
copy agrees with this model.

## Limitations

*To fill*.
"""
    with open(os.path.join(folder, CARD_FILE), "w") as fh:
        fh.write(text)
