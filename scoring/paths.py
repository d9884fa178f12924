"""Which path scores a run's windows: dense passes over blocks of each band, or window by window.

A model that declares a dense stride (``model.json``'s ``dense``, proved exact when it loads:
:mod:`engines.dense`) scores every window of a block of the band in one pass, sharing the
convolutions of the pixels its windows overlap on; the run uses that when ``--stride`` is a
multiple of the dense stride, unless ``--no-dense``. The windows off the stride's grid (the
``align`` policy's last row and column) are scored one by one either way. The manifest says
which path a run took and why (``scoring``).
"""
from __future__ import annotations

__all__ = ["scoring_path", "DENSE", "PER_WINDOW", "DENSE_PASS_PIXELS"]

DENSE, PER_WINDOW = "dense", "per-window"
#: The picture pixels one dense pass takes in: what bounds its activations (the first layer
#: holds its width in float32 per pixel, 128 bytes at 32 channels), as --batch-size bounds a
#: window batch's. 2^19 took the default's executor worker to 616 MB on the gigapixel BigTIFF
#: (the bar is 600); 2^18, to 531.
DENSE_PASS_PIXELS = 1 << 18


def scoring_path(spec, *, stride: int, dense: bool = True) -> dict:
    """The path a run at ``stride`` takes with the model of ``spec``: ``{"path": "dense",
    "dense_stride", "pass_pixels"}`` or ``{"path": "per-window", "reason"}`` (``None`` when the
    model has no dense path at all)."""
    declared = spec.dense_stride
    if not declared:
        return {"path": PER_WINDOW, "reason": None}
    if not dense:
        return {"path": PER_WINDOW, "reason": "--no-dense"}
    if stride % declared:
        return {"path": PER_WINDOW, "reason": f"--stride {stride} is not a multiple of the model's dense stride "
                                              f"{declared}"}
    return {"path": DENSE, "dense_stride": declared, "pass_pixels": DENSE_PASS_PIXELS}
