"""Read and validate the input picture; convert it to 8-bit RGB."""
from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from core import storage
from core.errors import InputError

__all__ = ["ImageInfo", "read_image", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 400_000_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIXTEEN_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class ImageInfo:
    """What the input was and what was done to it; goes into the manifest."""

    url: str
    width: int
    height: int
    format: str
    mode: str
    bit_depth: int
    converted: str | None

    def to_json(self) -> dict:
        return asdict(self)


def _png_bit_depth(data: bytes) -> int | None:
    # IHDR is always the first chunk: signature (8), length (4), type (4), w, h (8), depth.
    if data[:8] == _PNG_SIGNATURE and len(data) > 24:
        return data[24]
    return None


def _to_rgb8(image: Image.Image, bit_depth: int) -> tuple[np.ndarray, str | None]:
    mode = image.mode
    if mode == "RGB" and bit_depth <= 8:
        return np.asarray(image), None
    if mode == "RGB":
        # Pillow already reduced 16-bit RGB to 8 bits per channel when decoding.
        return np.asarray(image), f"{bit_depth}-bit RGB reduced to 8-bit RGB"
    if mode in _SIXTEEN_BIT_GRAY:
        gray = np.asarray(image).astype(np.uint32)
        shift = 8 if gray.max(initial=0) > 255 or bit_depth == 16 else 0
        gray8 = np.clip(gray >> shift, 0, 255).astype(np.uint8)
        return np.repeat(gray8[:, :, None], 3, axis=2), f"{bit_depth}-bit grayscale ({mode}) to 8-bit RGB"
    if mode in ("F",):
        raise InputError(f"floating-point images (mode {mode}) are not supported; save as 8- or 16-bit")
    note = {
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
    }.get(mode, f"{mode} to RGB")
    return np.asarray(image.convert("RGB")), note


def read_image(url: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1,
               storage_options: dict | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Read an image from a local path or URL as ``(H, W, 3)`` uint8 RGB.

    Raises
    ------
    InputError
        Missing file, not an image, truncated or corrupt data, more than ``max_pixels``
        pixels (checked from the header, before decoding), or a side below ``min_side``.
    """
    fs, path = storage.filesystem(url, storage_options)
    try:
        data = storage.read_bytes(fs, path, url=url)
    except FileNotFoundError:
        raise InputError(f"image not found: {url}") from None
    except IsADirectoryError:
        raise InputError(f"image path is a folder, not a file: {url}") from None
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError(f"not an image (unrecognised format): {url}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (--max-pixels)"
        )
    if width < min_side or height < min_side:
        raise InputError(f"image is {width}x{height}, smaller than the {min_side}x{min_side} window")
    bit_depth = _png_bit_depth(data) or {"I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "1": 1}.get(image.mode, 8)
    try:
        with warnings.catch_warnings():
            # Our own limit was checked above; Pillow's bomb guard would refuse big scans.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image.load()
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image is truncated or corrupt: {url} ({exc})") from None
    pixels, converted = _to_rgb8(image, bit_depth)
    info = ImageInfo(url=url, width=width, height=height, format=image.format or "unknown",
                     mode=image.mode, bit_depth=bit_depth, converted=converted)
    return np.ascontiguousarray(pixels, dtype=np.uint8), info
