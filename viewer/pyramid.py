"""A picture's DeepZoom tile pyramid, written by libvips ``dzsave`` in little memory.

The pyramid is made from the very pixels the windows were scored on (8-bit RGB, orientation
and conversions applied: :func:`pixels.read_band`), so the viewer's boxes fall on what the
model saw. A picture of up to :data:`WHOLE_PIXELS` is tiled from memory; a larger one is
first written band by band to an uncompressed tiled TIFF on local disk, which libvips reads
back tile by tile, so memory stays near one band whatever the picture's size.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from core.errors import TilescanError
from pixels import ImageInfo, read_band
from pixels.bands import HELD_WHOLE_PIXELS

__all__ = ["write_pyramid", "write_pyramid_apart", "PYRAMID_NAME", "TILE_SIZE", "OVERLAP", "TILE_FORMAT",
           "WHOLE_PIXELS"]

#: ``<folder>/tiles.dzi`` and ``<folder>/tiles_files/<level>/<column>_<row>.jpg``.
PYRAMID_NAME = "tiles"
#: 510 + 2 x 1 overlap = 512-pixel tiles: a quarter of the files of DeepZoom's usual 254, which
#: matters on a lake, where every tile is a request.
TILE_SIZE = 510
OVERLAP = 1
TILE_FORMAT = "jpg"
_JPEG_QUALITY = 85
#: Pictures up to this size are tiled from memory (the overlay holds them whole too).
WHOLE_PIXELS = HELD_WHOLE_PIXELS
#: Rows per band read into the local file of a larger picture: about 8 megapixels (libvips
#: then reads it back at its own pace; a larger band only holds more memory).
_BAND_PIXELS = 8_000_000
_LOCAL_TILE = 512


def _write_local_tiff(info: ImageInfo, path: str, storage_options) -> None:
    """The picture as an uncompressed tiled TIFF at ``path``, read band by band (top to bottom:
    one pass of a PNG or JPEG decoder) and written tile row by tile row."""
    import tifffile

    rows = max(_LOCAL_TILE, _BAND_PIXELS // info.width // _LOCAL_TILE * _LOCAL_TILE)

    def tiles():
        for y0 in range(0, info.height, rows):
            band = read_band(info, y0, min(info.height, y0 + rows), storage_options=storage_options)
            for top in range(0, band.shape[0], _LOCAL_TILE):
                for left in range(0, info.width, _LOCAL_TILE):
                    yield band[top:top + _LOCAL_TILE, left:left + _LOCAL_TILE]
            del band  # not held while the next one is read

    tifffile.imwrite(path, tiles(), shape=(info.height, info.width, 3), dtype=np.uint8, tile=(_LOCAL_TILE,
                     _LOCAL_TILE), photometric="rgb", bigtiff=True, metadata=None)


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
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tif") as local:
            _write_local_tiff(info, local.name, storage_options)
            # Read back through libtiff, tile by tile into libvips' bounded cache: a mapped raw
            # file would put every page libvips touched into this process's resident memory.
            image = pyvips.Image.new_from_file(local.name)
            image.dzsave(target, **options)
            del image  # libvips lets go of the file before it is removed
    # libvips' own record of the image (with the time it was written): no viewer reads it.
    os.remove(os.path.join(folder, f"{PYRAMID_NAME}_files", "vips-properties.xml"))
    return {"tile_size": TILE_SIZE, "overlap": OVERLAP, "format": TILE_FORMAT, "width": info.width,
            "height": info.height}


def write_pyramid_apart(info: ImageInfo, folder: str, *, storage_options: dict | None = None) -> dict:
    """:func:`write_pyramid` in a Python process of its own (``python -m viewer.pyramid``), for a
    picture larger than :data:`WHOLE_PIXELS`: libvips' strips and caches (a few hundred MB for a
    gigapixel picture) and what the allocator keeps of them afterwards go with that process,
    not into a long-lived Python worker, which holds its engine beside them.

    Raises
    ------
    TilescanError
        With the child's last line, when it fails.
    """
    import pickle
    import subprocess
    import sys

    # The child imports this code as this process does: the executor's shipped zip included.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    # Pickled on stdin, never in its command line or environment: storage options hold credentials.
    done = subprocess.run([sys.executable, "-m", "viewer.pyramid"], input=pickle.dumps((info, folder, storage_options)),
                          capture_output=True, env=env)
    if done.returncode:
        said = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
        raise TilescanError(f"the viewer's pyramid of {info.url} failed: {said[-1] if said else done.returncode}")
    return pickle.loads(done.stdout)


def _main() -> None:
    import pickle
    import sys

    info, folder, storage_options = pickle.loads(sys.stdin.buffer.read())
    try:
        described = write_pyramid(info, folder, storage_options=storage_options)
    except TilescanError as exc:  # one line for the parent to say
        sys.exit(str(exc))
    sys.stdout.buffer.write(pickle.dumps(described))


if __name__ == "__main__":
    _main()
