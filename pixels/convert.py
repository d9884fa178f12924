"""Every picture to 8-bit RGB, the same way whichever decoder read it.

Pillow images (whole decodes) and sample arrays (tifffile and libvips band reads) go
through the same rules, so a band read equals the same rows of a whole decode: gray is
repeated into three channels, alpha dropped, 16-bit samples keep their high byte.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from core.errors import InputError

__all__ = ["conversion_note", "pil_to_rgb8", "samples_to_rgb8", "SIXTEEN_BIT_GRAY"]

SIXTEEN_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_NOTES = {
    "L": "grayscale to RGB",
    "1": "1-bit to RGB",
    "P": "palette to RGB",
    "PA": "palette with alpha to RGB (alpha dropped)",
    "LA": "grayscale with alpha to RGB (alpha dropped)",
    "RGBA": "RGBA to RGB (alpha dropped)",
    "RGBa": "RGBa to RGB (alpha dropped)",
    "CMYK": "CMYK to RGB",
    "YCbCr": "YCbCr to RGB",
    "LAB": "Lab to RGB",
    "HSV": "HSV to RGB",
}


def conversion_note(mode: str, bit_depth: int) -> str | None:
    """What turning a picture of this Pillow ``mode`` and ``bit_depth`` into 8-bit RGB does, or ``None``."""
    if mode == "RGB":
        return None if bit_depth <= 8 else f"{bit_depth}-bit RGB reduced to 8-bit RGB"
    if mode in SIXTEEN_BIT_GRAY:
        return f"{bit_depth}-bit grayscale ({mode}) to 8-bit RGB"
    if mode == "F":
        raise InputError(f"floating-point images (mode {mode}) are not supported; save as 8- or 16-bit")
    return _NOTES.get(mode, f"{mode} to RGB")


def pil_to_rgb8(image: Image.Image, bit_depth: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 of a decoded Pillow image (Pillow already keeps 16-bit RGB's high bytes)."""
    mode = image.mode
    conversion_note(mode, bit_depth)  # refuses what cannot be converted
    if mode == "RGB":
        return np.asarray(image)
    if mode in SIXTEEN_BIT_GRAY:
        gray = np.asarray(image).astype(np.uint32)
        shift = 8 if gray.max(initial=0) > 255 or bit_depth == 16 else 0
        gray8 = np.clip(gray >> shift, 0, 255).astype(np.uint8)
        return np.repeat(gray8[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def samples_to_rgb8(samples: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 from ``(H, W)`` or ``(H, W, S)`` samples, ``S`` 1 to 4, uint8 or uint16.

    Gray (``S`` 1 or 2) is repeated into three channels; the alpha of ``S`` 2 or 4 is dropped;
    uint16 keeps the high byte, as Pillow does.
    """
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if samples.ndim != 3 or samples.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"cannot convert samples of shape {samples.shape} to RGB")
    if samples.dtype == np.uint16:
        samples = (samples >> 8).astype(np.uint8)
    elif samples.dtype != np.uint8:
        raise InputError(f"cannot convert {samples.dtype} samples to 8-bit RGB")
    if samples.shape[2] in (1, 2):
        return np.repeat(samples[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(samples[:, :, :3])
