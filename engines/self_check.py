"""The self-check a model passes on the driver before Spark starts: real batches through the engine.

A model that does not keep its contract fails in the executors otherwise, as a Py4J trace
hundreds of lines long, or, worse, scores silently wrong (logits taken for
probabilities). So one batch of the size the run will use, and a batch of one window,
run through the loaded engine, and what comes out is checked against ``model.json``:
the shapes against the classes and the box output, declared probabilities summing to 1,
declared logits not being probabilities already, and a window's scores not depending on
the rest of its batch; a network declaring a dense stride scoring a band exactly as its
windows alone (:mod:`engines.dense`). Each failure is one line naming what was found and the
remedy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.errors import BundleError
from core.redaction import redact
from engines.dense import DenseCheck, check_dense

__all__ = ["SelfCheck", "self_check", "probe_windows", "SUM_TOLERANCE", "BATCH_TOLERANCE"]

#: How far a row of declared probabilities may sum from 1 (float32 softmax rounding is ~1e-7).
SUM_TOLERANCE = 1e-3
#: How far a window's scores may differ between a batch of one and the run's batch, per
#: precision: float32 kernels may block a batch differently; int8 ranges are per tensor.
BATCH_TOLERANCE = {"float32": 1e-4, "int8": 1e-2}


@dataclass(frozen=True)
class SelfCheck:
    """What the self-check ran: the batch sizes, the batch the network is fixed to (if any),
    seconds, and the dense check of a network that declares a dense stride."""

    engine: str
    batch_sizes: tuple[int, ...]
    fixed_batch: int | None
    seconds: float
    dense: DenseCheck | None = None

    def to_json(self) -> dict:
        return {"engine": self.engine, "batch_sizes": list(self.batch_sizes), "fixed_batch": self.fixed_batch,
                "seconds": round(self.seconds, 4), **({"dense": self.dense.to_json()} if self.dense else {})}


def probe_windows(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``(count, 3, size, size)`` uint8: noise, flat colours and gradients, a fixed draw per seed."""
    rng = np.random.default_rng(seed)
    windows = rng.integers(0, 256, (count, 3, size, size), dtype=np.uint8)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for k in range(1, count, 3):
        windows[k] = rng.integers(0, 256, (3, 1, 1), dtype=np.uint8)
    for k in range(2, count, 3):
        weights = rng.uniform(0, 1, (3, 1, 1)).astype(np.float32)
        windows[k] = (weights * ramp[None, :, None] + (1 - weights) * ramp[None, None, :]).astype(np.uint8)
    return windows


def self_check(engine, batch_size: int) -> SelfCheck:
    """Run a batch of ``batch_size`` windows and a batch of one through ``engine`` and check them
    against its model's contract.

    Raises
    ------
    BundleError
        With one line, when the model does not keep its contract.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    spec = engine.spec
    started = time.perf_counter()
    windows = probe_windows(max(batch_size, 2), spec.size)[:batch_size]
    raw = _run(engine, windows)
    first = np.asarray(raw[0])
    classes = len(spec.classes)
    if first.ndim != 2 or first.shape[1] != classes:
        got = first.shape[-1] if first.ndim else "no"
        raise BundleError(f"the model outputs {got} class scores per window ({_shape(first)} for a batch of "
                          f"{batch_size}), but model.json names {classes} classes ({', '.join(spec.classes)})")
    if first.shape[0] != batch_size:
        raise BundleError(f"the model returns {first.shape[0]} rows for a batch of {batch_size} windows; "
                          "export it with a dynamic batch axis")
    if spec.boxes and (len(raw) < 2 or np.asarray(raw[1]).shape != (batch_size, 4)):
        got = "no second output" if len(raw) < 2 else f"a second output of shape {_shape(np.asarray(raw[1]))}"
        raise BundleError(f"model.json declares box deltas (a second output of 4 per window), but the model gives "
                          f"{got}")
    if not np.isfinite(first).all():
        raise BundleError("the model's class scores are not all finite on a batch of plain windows")
    _check_activation(spec.output, first.astype(np.float64))
    probabilities = engine.detect(windows)[0]
    alone = engine.detect(windows[:1])[0]
    gap = float(np.abs(alone[0] - probabilities[0]).max())
    allowed = BATCH_TOLERANCE.get(engine.precision, BATCH_TOLERANCE["float32"])
    if gap > allowed:
        raise BundleError(f"a window's scores depend on the other windows in its batch (off by {gap:.2g} between a "
                          f"batch of 1 and of {batch_size}; allowed {allowed:g}): export the model in inference "
                          "mode (model.eval(): batch norm with its running statistics)")
    dense = check_dense(engine) if spec.dense_stride else None
    return SelfCheck(engine.name, tuple(sorted({batch_size, 1}, reverse=True)), engine.fixed_batch,
                     time.perf_counter() - started, dense)


def _run(engine, windows: np.ndarray) -> list:
    try:
        return engine.raw_outputs(windows)
    except Exception as exc:  # noqa: BLE001 - the framework's own error types; one line with its first line
        first = str(redact(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fixed = f"; the graph's batch axis is fixed at {engine.fixed_batch}" if engine.fixed_batch else ""
        raise BundleError(f"the model fails on a batch of {len(windows)} windows of its declared input "
                          f"{_declared(engine.spec)}{fixed} ({type(exc).__name__}: {first[:200]})") from None


def _check_activation(output: str, raw: np.ndarray) -> None:
    """Declared probabilities must be probabilities; declared logits must not be them already."""
    in_unit = raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    sums = raw.sum(axis=1)
    sum_to_one = bool(np.abs(sums - 1).max() <= SUM_TOLERANCE)
    found = f"values {raw.min():.3g} to {raw.max():.3g}, rows summing to {sums.min():.3g} to {sums.max():.3g}"
    if output == "probabilities" and not (in_unit and sum_to_one):
        hint = "declare output logits (softmax applied here) or sigmoid (multi-label)" if not in_unit else \
            "declare output sigmoid if the classes are independent (multi-label)"
        raise BundleError(f"model.json declares output probabilities, but the model's outputs are not ({found}): "
                          f"{hint}")
    if output in ("logits", "sigmoid") and in_unit and sum_to_one and raw.shape[1] > 1:
        raise BundleError(f"model.json declares output {output}, but the model's outputs are probabilities "
                          f"already ({found}: a softmax inside the graph): declare output probabilities")


def _declared(spec) -> str:
    return f"{spec.layout} {spec.dtype} ({', '.join(map(str, spec.input_shape))})"


def _shape(array: np.ndarray) -> str:
    return "(" + ", ".join(map(str, array.shape)) + ")"
