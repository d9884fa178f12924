"""Windows cut from a user's own pictures, at a model's input size: what calibration and validation see."""
from __future__ import annotations

import numpy as np

from core.errors import InputError
from pixels import probe_image, read_band
from scoring.inputs import resolve_source

__all__ = ["picture_windows", "BAND_ROWS"]

#: Rows of a picture read at a time; windows are drawn from a few such bands per picture,
#: so that a gigapixel picture costs a few bands, not its whole decode.
BAND_ROWS = 512


def picture_windows(source: str, size: int, count: int, *, seed: int = 0,
                    storage_options: dict | None = None) -> np.ndarray:
    """``(count, size, size, 3)`` uint8 RGB windows at random places in the pictures ``source``
    names (a picture, glob, folder or list file, local or on the lake), in equal shares per
    picture, each share from one band of at most :data:`BAND_ROWS` rows at a random height.

    Raises
    ------
    InputError
        When nothing matches, or no picture is at least ``size`` pixels on each side.
    """
    if count < 1 or size < 1:
        raise ValueError(f"`count` and `size` must be >= 1, got {count} and {size}")
    inputs = resolve_source(source, storage_options=storage_options)
    rng = np.random.default_rng(seed)
    infos = [probe_image(url, min_side=size, storage_options=storage_options) for url in inputs.urls]
    shares = np.diff(np.linspace(0, count, len(infos) + 1).round().astype(int))
    windows = []
    for info, share in zip(infos, shares.tolist()):
        if not share:
            continue
        rows = min(info.height, max(BAND_ROWS, size))
        y0 = int(rng.integers(0, info.height - rows + 1))
        band = read_band(info, y0, y0 + rows, storage_options=storage_options)
        ys = rng.integers(0, rows - size + 1, share)
        xs = rng.integers(0, info.width - size + 1, share)
        windows.extend(band[y:y + size, x:x + size] for y, x in zip(ys.tolist(), xs.tolist()))
    if not windows:
        raise InputError(f"no windows could be cut from {source}")
    return np.ascontiguousarray(np.stack(windows))
