"""A model's contract: what its network takes in and gives out, as ``model.json`` declares it.

Every field a network exported from PyTorch, Keras/TensorFlow or MXNet commonly needs is
declared, and every declared field is honoured by every engine (through
:meth:`ModelSpec.network_input` and :meth:`ModelSpec.activate`, the one place each is
computed). A field or value the engines would not honour is refused with one line, never
ignored: a model scored with the wrong normalisation or with logits taken for
probabilities gives numbers that look plausible and are wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import BundleError
from tiling.box import BOX_ENCODING

__all__ = ["ModelSpec", "OUTPUTS", "PIXEL_SCALES", "LAYOUTS", "DTYPES", "CHANNEL_ORDERS", "NORMALISATIONS",
           "softmax", "sigmoid"]

#: What the network's first output holds: ``probabilities`` (a softmax inside the graph, rows
#: sum to 1), ``logits`` (softmax applied here), or ``sigmoid`` (independent per-class logits,
#: multi-label: a sigmoid applied here, rows need not sum to 1).
OUTPUTS = ("probabilities", "logits", "sigmoid")
#: The range 8-bit pixels are mapped to before ``mean`` and ``std``: ``0-1`` (pixel / 255,
#: torchvision's ``ToTensor``) or ``0-255`` (the pixel as it is, mmcv's and Caffe's convention).
PIXEL_SCALES = ("0-1", "0-255")
LAYOUTS = ("NCHW", "NHWC")
#: ``uint8`` feeds the pixels as they are, for a graph that normalises inside itself.
DTYPES = ("float32", "uint8")
CHANNEL_ORDERS = ("RGB", "BGR")
#: Named means and standard deviations, on the ``0-1`` scale (multiplied by 255 for ``0-255``).
NORMALISATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # torchvision's Normalize(0.5, 0.5): inputs in [-1, 1]
}
_INPUT_KEYS = ("size", "channel_order", "layout", "dtype", "pixel_scale", "mean", "std")
_BOX_KEYS = ("output", "encoding")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits, in float32, stable for any magnitude."""
    shifted = np.asarray(logits, np.float32) - np.max(logits, axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function of float32 logits."""
    out = -np.asarray(logits, np.float32)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


@dataclass(frozen=True)
class ModelSpec:
    """A model's input and output contract.

    Windows of 8-bit RGB pixels reach the network in ``channel_order`` and ``layout``
    (``NCHW`` or ``NHWC``), as ``dtype``: float32 computed as ``(pixel / k - mean) / std``
    per channel, ``k`` 255 for ``pixel_scale`` ``0-1`` and 1 for ``0-255``; or uint8 as they
    are. The network's first output has one column per class, in the order of ``classes``:
    probabilities, logits or per-class sigmoid logits (``output``); a detector (``boxes`` set
    to :data:`tiling.box.BOX_ENCODING`) also outputs, second, four box deltas per window.

    A network that scores a whole band at once declares its output stride (``dense_stride``,
    ``"dense": {"stride": s}`` in model.json): given NCHW input of ``size + s*j`` by ``size +
    s*k`` pixels its outputs are maps ``(N, C, j + 1, k + 1)`` (and ``(N, 4, j + 1, k + 1)``),
    position ``(r, c)`` being the window at ``(c*s, r*s)``, exactly as if scored alone; on one
    window the maps are 1x1. Engines check that it is exact before they use it
    (:mod:`engines.dense`).
    """

    name: str
    classes: tuple[str, ...]
    size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    background: str = "background"
    channel_order: str = "RGB"
    boxes: str | None = None
    pixel_scale: str = "0-1"
    layout: str = "NCHW"
    dtype: str = "float32"
    output: str = "probabilities"
    dense_stride: int | None = None

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise BundleError(f"model.json: `classes` must be unique names, got {list(self.classes)}")
        if self.background not in self.classes:
            raise BundleError(f"model.json: background class {self.background!r} is not in {list(self.classes)}")
        for name, allowed in (("channel_order", CHANNEL_ORDERS), ("pixel_scale", PIXEL_SCALES),
                              ("layout", LAYOUTS), ("dtype", DTYPES), ("output", OUTPUTS)):
            if getattr(self, name) not in allowed:
                where = "output" if name == "output" else f"input.{name}"
                raise BundleError(f"model.json: `{where}` must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           and math.isfinite(v) for v in values):
                raise BundleError(f"model.json: input.{name} must be finite numbers, three of them, got {list(values)}")
        if min(self.std) <= 0:
            raise BundleError(f"model.json: input.std must be > 0, got {list(self.std)}")
        if self.dtype == "uint8" and (tuple(self.mean) != (0, 0, 0) or tuple(self.std) != (1, 1, 1)
                                      or self.pixel_scale != "0-255"):
            raise BundleError("model.json: a uint8 input takes the pixels as they are (the graph normalises "
                              "them): give no `mean` or `std`, and `pixel_scale` 0-255")
        if self.size < 1:
            raise BundleError(f"model.json: input size must be >= 1, got {self.size}")
        if self.boxes not in (None, BOX_ENCODING):
            raise BundleError(f"model.json: `boxes.encoding` must be {BOX_ENCODING!r}, got {self.boxes!r}")
        if self.dense_stride is not None:
            stride = self.dense_stride
            if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= self.size:
                raise BundleError(f"model.json: dense.stride must be a whole number of pixels from 1 to the input "
                                  f"size {self.size}, got {stride!r}")
            if self.layout != "NCHW":
                raise BundleError("model.json: a dense network (dense.stride) takes NCHW bands and gives NCHW maps; "
                                  f"declare input.layout NCHW, got {self.layout}")

    @property
    def input_shape(self) -> tuple:
        """The network input's shape, ``"N"`` for the batch axis."""
        return ("N", 3, self.size, self.size) if self.layout == "NCHW" else ("N", self.size, self.size, 3)

    def _scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel, in ``channel_order``: the input is ``pixel * scale + offset``."""
        std = np.asarray(self.std, dtype=np.float32)
        k = 255.0 if self.pixel_scale == "0-1" else 1.0
        return (1.0 / (k * std)).astype(np.float32), (-np.asarray(self.mean, dtype=np.float32) / std)

    def normalise(self, windows: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` uint8 RGB windows as ``(N, 3, S, S)`` float32 in ``channel_order``,
        ``(pixel / k - mean) / std`` as one multiply-add per pixel: the training pipeline's
        input, and the engines' for an NCHW float32 contract (:meth:`network_input`)."""
        if self.channel_order == "BGR":
            windows = windows[:, ::-1]
        scale, offset = self._scale_offset()
        batch = windows.astype(np.float32)
        batch *= scale.reshape(1, 3, 1, 1)
        batch += offset.reshape(1, 3, 1, 1)
        return batch

    def network_input(self, windows: np.ndarray) -> np.ndarray:
        """The network's input for a batch of 8-bit RGB windows: the one place this is computed.

        Parameters
        ----------
        windows : numpy.ndarray
            ``(N, 3, S, S)`` uint8, channels R, G, B; may be a non-contiguous view.

        Returns
        -------
        numpy.ndarray
            Contiguous, in ``layout`` (:attr:`input_shape`) and ``dtype``, normalised as the
            class docstring says.
        """
        if self.layout == "NCHW" and self.dtype == "float32":
            return self.normalise(windows)
        if self.channel_order == "BGR":
            windows = windows[:, ::-1]
        if self.layout == "NHWC":
            windows = windows.transpose(0, 2, 3, 1)  # as uint8, a quarter of the bytes
        if self.dtype == "uint8":
            return np.ascontiguousarray(windows)
        scale, offset = self._scale_offset()
        batch = windows.astype(np.float32, order="C")  # written in NHWC order
        batch *= scale
        batch += offset
        return batch

    def activate(self, raw: np.ndarray) -> np.ndarray:
        """Class probabilities from the network's first output: as they are, softmax or sigmoid (``output``)."""
        raw = np.asarray(raw, dtype=np.float32)
        if self.output == "logits":
            return softmax(raw)
        if self.output == "sigmoid":
            return sigmoid(raw)
        return raw

    @property
    def foreground(self) -> tuple[str, ...]:
        """The classes that become boxes, in output order."""
        return tuple(c for c in self.classes if c != self.background)

    def to_json(self) -> dict:
        normalised = {} if self.dtype == "uint8" else {"mean": list(self.mean), "std": list(self.std)}
        return {
            "name": self.name,
            "classes": list(self.classes),
            "background": self.background,
            "input": {
                "size": [self.size, self.size],
                "channel_order": self.channel_order,
                "layout": self.layout,
                "dtype": self.dtype,
                "pixel_scale": self.pixel_scale,
                **normalised,
            },
            "output": self.output,
            **({"boxes": {"output": 1, "encoding": self.boxes}} if self.boxes else {}),
            **({"dense": {"stride": self.dense_stride}} if self.dense_stride else {}),
        }

    @classmethod
    def from_json(cls, doc: dict) -> ModelSpec:
        try:
            inp = doc["input"]
            if not isinstance(inp, dict):
                raise BundleError(f"model.json: `input` must be an object, got {inp!r}")
            unknown = sorted(set(inp) - set(_INPUT_KEYS))
            if unknown:
                raise BundleError(f"model.json: input.{unknown[0]} is not part of the model contract (it has "
                                  f"{', '.join(_INPUT_KEYS)}); the engines would not honour it")
            height, width = inp["size"]
            if height != width:
                raise BundleError(f"model.json: only square inputs are supported (the window grid is square), "
                                  f"got {height}x{width}")
            dtype = inp.get("dtype", "float32")
            boxes = doc.get("boxes")
            if boxes is not None:
                if not isinstance(boxes, dict) or set(boxes) - set(_BOX_KEYS):
                    raise BundleError(f"model.json: `boxes` must be an object of {', '.join(_BOX_KEYS)}, got {boxes!r}")
                if boxes.get("output", 1) != 1:
                    raise BundleError(f"model.json: boxes.output must be 1 (the network's second output), "
                                      f"got {boxes.get('output')!r}")
            dense = doc.get("dense")
            if dense is not None and (not isinstance(dense, dict) or set(dense) != {"stride"}):
                raise BundleError(f"model.json: `dense` must be an object holding `stride` only, got {dense!r}")
            identity = dtype == "uint8"
            missing = [k for k in ("mean", "std") if k not in inp and not identity]
            if missing:
                raise BundleError(f"model.json: input.{missing[0]} is required for a float32 input (three numbers, "
                                  "on the input.pixel_scale)")
            return cls(
                name=str(doc["name"]),
                classes=tuple(doc["classes"]),
                size=int(height),
                mean=tuple(inp.get("mean", (0, 0, 0) if identity else None)),
                std=tuple(inp.get("std", (1, 1, 1) if identity else None)),
                background=doc.get("background", "background"),
                channel_order=inp.get("channel_order", "RGB"),
                boxes=boxes["encoding"] if boxes is not None else None,
                pixel_scale=inp.get("pixel_scale", "0-255" if identity else "0-1"),
                layout=inp.get("layout", "NCHW"),
                dtype=dtype,
                output=doc.get("output", "probabilities"),
                dense_stride=None if dense is None else dense["stride"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model.json: malformed ({type(exc).__name__}: {exc})") from None
