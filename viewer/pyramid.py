"""A picture's DeepZoom tile pyramid, written by libvips ``dzsave`` in little memory.

The pyramid is made from the very pixels the windows were scored on (8-bit RGB, orientation
and conversions applied: :func:`pixels.read_band`), so the viewer's boxes fall on what the
model saw. A picture of up to :data:`WHOLE_PIXELS` is tiled from memory; a larger one is
first written band by band to an uncompressed local file, which libvips maps and tiles
strip by strip, so memory stays near one band whatever the picture's size.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from pixels import ImageInfo, read_band

__all__ = ["write_pyramid", "PYRAMID_NAME", "TILE_SIZE", "OVERLAP", "TILE_FORMAT", "WHOLE_PIXELS"]

#: ``<folder>/tiles.dzi`` and ``<folder>/tiles_files/<level>/<column>_<row>.jpg``.
PYRAMID_NAME = "tiles"
#: 510 + 2 x 1 overlap = 512-pixel tiles: a quarter of the files of DeepZoom's usual 254, which
#: matters on a lake, where every tile is a request.
TILE_SIZE = 510
OVERLAP = 1
TILE_FORMAT = "jpg"
_JPEG_QUALITY = 85
#: Pictures up to this size are tiled from memory (the overlay holds them whole too).
WHOLE_PIXELS = 64_000_000
#: Rows per band written to the local file of a larger picture: about 32 megapixels.
_BAND_PIXELS = 32_000_000


def write_pyramid(info: ImageInfo, folder: str, *, storage_options: dict | None = None) -> dict:
    """Write the pyramid of the picture ``info`` describes into the local ``folder`` (made if
    missing); returns its DeepZoom description (``tile_size``, ``overlap``, ``format``, ``width``,
    ``height``) as the viewer's page needs it."""
    import pyvips  # the executor's libvips (pyvips-binary), imported where it is used

    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, PYRAMID_NAME)
    options = {"suffix": f".{TILE_FORMAT}[Q={_JPEG_QUALITY}]", "tile_size": TILE_SIZE, "overlap": OVERLAP,
               "keep": "none"}  # no metadata in the tiles
    if info.width * info.height <= WHOLE_PIXELS:
        pixels = read_band(info, 0, info.height, storage_options=storage_options)
        pyvips.Image.new_from_array(pixels).dzsave(target, **options)
    else:
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".rgb") as raw:
            rows = max(1, _BAND_PIXELS // info.width)
            for y0 in range(0, info.height, rows):  # top to bottom: one pass of a PNG or JPEG decoder
                band = read_band(info, y0, min(info.height, y0 + rows), storage_options=storage_options)
                raw.write(np.ascontiguousarray(band))
            raw.flush()
            image = pyvips.Image.rawload(raw.name, info.width, info.height, 3)
            image.dzsave(target, **options)
            del image  # libvips lets go of the mapped file before it is removed
    # libvips' own record of the image (with the time it was written): no viewer reads it.
    os.remove(os.path.join(folder, f"{PYRAMID_NAME}_files", "vips-properties.xml"))
    return {"tile_size": TILE_SIZE, "overlap": OVERLAP, "format": TILE_FORMAT, "width": info.width,
            "height": info.height}
