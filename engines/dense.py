"""Proof, at load, that a network declaring a dense stride scores a band as it scores its windows alone.

A padding-free network whose receptive field is exactly its input gives a window the same
scores whether it sees the window alone or a whole band around it; one that pads its
convolutions, pools across window borders, or looks past its input does not, and the dense
path would score every window of a run silently wrong. So before such a bundle is used (the
driver's self-check, :mod:`engines.self_check`, and ``tilescan-bundle check``) a probe band
(noise, flat colours and gradients, with borders between them) goes through the engine in one
pass and window by window, every window of its dense grid, and the scores must agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import BundleError

__all__ = ["DenseCheck", "check_dense", "probe_band", "DENSE_TOLERANCE", "PROBE_POSITIONS"]

#: How far a window's scores (probabilities and box deltas) may differ between the band's pass
#: and its own, at any precision: kernels may sum in another order on another shape, and int8's
#: integer sums are exact, so only float rounding is allowed for.
DENSE_TOLERANCE = 1e-4
#: The probe band's window positions, rows by columns: enough to cross a pooling's every phase.
PROBE_POSITIONS = (5, 7)


@dataclass(frozen=True)
class DenseCheck:
    """What the dense check ran: the stride, the probe band's size, its windows and the largest difference."""

    stride: int
    band: tuple[int, int]
    windows: int
    difference: float

    def summary(self) -> str:
        return (f"dense at stride {self.stride}: a {self.band[0]}x{self.band[1]} band's {self.windows} windows as "
                f"scored alone (to {self.difference:.1g})")

    def to_json(self) -> dict:
        return {"stride": self.stride, "band": list(self.band), "windows": self.windows,
                "difference": float(f"{self.difference:.3g}")}


def probe_band(size: int, stride: int, positions=PROBE_POSITIONS, seed: int = 0) -> np.ndarray:
    """``(3, H, W)`` uint8 holding ``positions`` windows at ``stride``: noise, with a flat
    rectangle and a gradient in it, so that windows straddle sharp borders."""
    rows, columns = positions
    height, width = size + stride * (rows - 1), size + stride * (columns - 1)
    rng = np.random.default_rng(seed)
    band = rng.integers(0, 256, (3, height, width), dtype=np.uint8)
    band[:, height // 3:, : width // 3] = rng.integers(0, 256, (3, 1, 1), dtype=np.uint8)
    ramp = np.linspace(0, 255, width - width // 2, dtype=np.float32)
    band[:, : height // 2, width // 2:] = (rng.uniform(0, 1, (3, 1, 1)) * ramp).astype(np.uint8)
    return band


def check_dense(engine) -> DenseCheck:
    """Score :func:`probe_band` through ``engine`` in one pass and window by window.

    Raises
    ------
    BundleError
        One line, when the band's pass fails or differs from the windows' own scores.
    """
    spec = engine.spec
    size, stride = spec.size, spec.dense_stride
    if engine.fixed_batch not in (None, 1):  # a band is one image of its own height and width
        raise BundleError(f"model.json declares dense.stride {stride}, but the model's batch axis is fixed at "
                          f"{engine.fixed_batch}: export it with a dynamic batch axis, height and width, or remove "
                          "`dense` from model.json")
    band = probe_band(size, stride)
    try:
        probs, deltas = engine.detect_band(band)
    except Exception as exc:  # noqa: BLE001 - the framework's own types: one line with the first of its message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BundleError(f"model.json declares dense.stride {stride}, but the model fails on a band of "
                          f"{band.shape[1]}x{band.shape[2]} pixels ({type(exc).__name__}: {first}): export it "
                          "with dynamic height and width, or remove `dense` from model.json") from None
    rows, columns = probs.shape[:2]
    windows = np.stack([band[:, r * stride:r * stride + size, c * stride:c * stride + size]
                        for r in range(rows) for c in range(columns)])
    alone_probs, alone_deltas = engine.detect(windows)
    difference = float(np.abs(probs.reshape(len(windows), -1) - alone_probs).max())
    if deltas is not None:
        difference = max(difference, float(np.abs(deltas.reshape(len(windows), -1) - alone_deltas).max()))
    if not difference <= DENSE_TOLERANCE:  # NaN fails too
        raise BundleError(f"model.json declares dense.stride {stride}, but a band's pass scores its windows "
                          f"{difference:.2g} away from scoring them alone (allowed {DENSE_TOLERANCE:g}): its "
                          "convolutions pad, or it sees past its window; remove `dense` from model.json")
    return DenseCheck(stride, (band.shape[1], band.shape[2]), len(windows), difference)
