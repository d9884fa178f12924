"""The golden batch a bundle carries: a few dozen windows, the float model's outputs on them,
and how far each precision of engine may stray from those outputs.

Every engine runs the batch when it is loaded (:mod:`engines.numerics`), on the driver and
in each executor's Python worker, so an engine whose numbers differ from what the model's
maker computed (int8 kernels that saturate on a CPU without VNNI, a broken framework
build, a model file that is not the one the references came from) is found before it
scores anything.

``golden.npz`` holds ``windows`` ``(N, 3, S, S)`` uint8 RGB, ``probabilities`` ``(N, C)``
float32 and, for a detector, ``deltas`` ``(N, 4)`` float32. It is listed in ``model.json``'s
``files`` under :data:`GOLDEN_KEY` with its sha256; ``model.json``'s ``golden`` record
names that key and gives a :class:`Tolerance` per precision (``float32``, ``int8``).
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from core.errors import BundleError

__all__ = ["GOLDEN_KEY", "GOLDEN_FILE", "PRECISIONS", "Tolerance", "Difference", "GoldenBatch", "read_golden",
           "golden_bytes", "difference"]

GOLDEN_KEY = "golden"
GOLDEN_FILE = "golden.npz"
#: The engine precisions a bundle gives tolerances for (:attr:`engines.Engine.precision`).
PRECISIONS = ("float32", "int8")


@dataclass(frozen=True)
class Difference:
    """How far an engine's outputs on the golden windows are from the references.

    ``probability_max`` and ``probability_mean``: the largest and the mean absolute
    difference over every window and class; ``delta_max``: the largest absolute difference
    of a box delta (``None`` for a classifier).
    """

    probability_max: float
    probability_mean: float
    delta_max: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Tolerance(Difference):
    """The largest :class:`Difference` an engine of one precision may show and still pass."""

    def admits(self, measured: Difference) -> bool:
        return (measured.probability_max <= self.probability_max
                and measured.probability_mean <= self.probability_mean
                and (measured.delta_max is None or self.delta_max is None or measured.delta_max <= self.delta_max))

    @classmethod
    def from_json(cls, doc, where: str) -> Tolerance:
        names = [f.name for f in fields(cls)]
        required = {"probability_max", "probability_mean"}
        if not isinstance(doc, dict) or set(doc) - set(names) or not required <= set(doc):
            raise BundleError(f"{where} must be an object of {', '.join(names)}, got {doc!r}")
        for name, value in doc.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise BundleError(f"{where}.{name} must be a number >= 0, got {value!r}")
        return cls(**{k: None if v is None else float(v) for k, v in doc.items()})


@dataclass(frozen=True, eq=False)
class GoldenBatch:
    """The windows, the float model's outputs on them, and a :class:`Tolerance` per precision."""

    windows: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)
    deltas: np.ndarray | None = field(repr=False)
    tolerances: dict

    def __len__(self) -> int:
        return len(self.windows)

    def tolerance(self, precision: str) -> Tolerance | None:
        """The tolerance for engines of ``precision``; ``None`` when the bundle gives none."""
        return self.tolerances.get(precision)


def difference(golden: GoldenBatch, probabilities: np.ndarray, deltas: np.ndarray | None) -> Difference:
    """The :class:`Difference` of an engine's outputs on ``golden.windows`` from its references."""
    gap = np.abs(np.asarray(probabilities, np.float64) - golden.probabilities)
    delta_max = None
    if golden.deltas is not None and deltas is not None:
        delta_max = float(np.abs(np.asarray(deltas, np.float64) - golden.deltas).max())
    return Difference(float(gap.max()), float(gap.mean()), delta_max)


def golden_bytes(windows: np.ndarray, probabilities: np.ndarray, deltas: np.ndarray | None = None) -> bytes:
    """``golden.npz`` as a bundle stores it (uncompressed: a few hundred kB, loaded without pickle)."""
    arrays = {"windows": np.ascontiguousarray(windows, np.uint8),
              "probabilities": np.ascontiguousarray(probabilities, np.float32)}
    if deltas is not None:
        arrays["deltas"] = np.ascontiguousarray(deltas, np.float32)
    sink = io.BytesIO()
    np.savez(sink, **arrays)
    return sink.getvalue()


def read_golden(record, data: bytes, *, size: int, classes: int, boxes: bool, where: str) -> GoldenBatch:
    """The golden batch of a bundle, checked against its spec.

    Parameters
    ----------
    record : dict
        ``model.json``'s ``golden`` record (its ``tolerance`` per precision).
    data : bytes
        ``golden.npz``, already verified against its sha256.
    size, classes, boxes
        The model's input side, its number of classes and whether it outputs box deltas.
    where : str
        Names the bundle in errors.

    Raises
    ------
    BundleError
        When the record or the arrays do not match the model.
    """
    tolerances = record.get("tolerance")
    if not isinstance(tolerances, dict) or not tolerances or set(tolerances) - set(PRECISIONS):
        raise BundleError(f"model.json in {where}: golden.tolerance must give tolerances for some of "
                          f"{', '.join(PRECISIONS)}, got {tolerances!r}")
    parsed = {p: Tolerance.from_json(t, f"model.json in {where}: golden.tolerance.{p}") for p, t in tolerances.items()}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise BundleError(f"model bundle {where}: the golden batch is not a readable .npz ({exc})") from None
    windows, probabilities, deltas = (arrays.get(k) for k in ("windows", "probabilities", "deltas"))
    n = len(windows) if windows is not None else 0
    expected = {"windows": ((n, 3, size, size), np.uint8), "probabilities": ((n, classes), np.float32)}
    if boxes:
        expected["deltas"] = ((n, 4), np.float32)
    for name, (shape, dtype) in expected.items():
        got = arrays.get(name)
        if got is None or got.shape != shape or got.dtype != dtype or not n:
            described = "missing" if got is None else f"{got.dtype} {got.shape}"
            raise BundleError(f"model bundle {where}: golden {name} must be {np.dtype(dtype).name} "
                              f"(N >= 1, {', '.join(map(str, shape[1:]))}), got {described}")
        if got.dtype == np.float32 and not np.isfinite(got).all():
            raise BundleError(f"model bundle {where}: golden {name} holds values that are not finite")
    return GoldenBatch(windows, probabilities, deltas if boxes else None, parsed)
