"""A picture's scores as a raster a GIS opens (``--heatmap``): ``heatmap.tif``.

One pixel per window position of the grid at ``--stride`` (the window at picture pixel
``(column * stride, row * stride)``), one float32 band per non-background class holding
that window's probability; windows off the grid (the ``align`` policy's last row and
column) are left out, and positions without a scored window are NaN. Tiled, Deflate
compressed, with overviews (each half the size, by averaging, as reduced-resolution
SubIFDs), and for a GeoTIFF picture with its georeference: the pixel size is the stride's,
and a pixel's centre is its window's centre on the map.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pyarrow as pa

from pixels.georef import Georef
from scoring.outputs import OPTIONAL_FILES
from scoring.results import probability_column

__all__ = ["heatmap_tiff", "HEATMAP_FILE", "TILE"]

HEATMAP_FILE = OPTIONAL_FILES[0]
#: The raster's tile side; overviews are made down to one tile.
TILE = 256


def _grid(table: pa.Table, classes, background: str, stride: int) -> tuple[np.ndarray, list]:
    """``(bands, rows, columns)`` float32 probabilities of the on-grid windows, NaN elsewhere."""
    x, y = (table.column(n).to_numpy().astype(np.int64) for n in ("x", "y"))
    on = (x % stride == 0) & (y % stride == 0)
    columns, rows = x[on] // stride, y[on] // stride
    names = [c for c in classes if c != background]
    shape = (len(names), int(rows.max()) + 1 if rows.size else 1, int(columns.max()) + 1 if columns.size else 1)
    bands = np.full(shape, np.nan, np.float32)
    for k, name in enumerate(names):
        bands[k, rows, columns] = table.column(probability_column(name)).to_numpy()[on]
    return bands, names


def _overviews(bands: np.ndarray) -> list[np.ndarray]:
    levels, level = [], bands
    while max(level.shape[1:]) > TILE:
        h, w = level.shape[1] // 2 * 2, level.shape[2] // 2 * 2
        if not h or not w:
            break
        quads = level[:, :h, :w].reshape(level.shape[0], h // 2, 2, w // 2, 2)
        with warnings.catch_warnings():  # a cell of positions without windows averages to NaN, as it should
            warnings.simplefilter("ignore", RuntimeWarning)
            level = np.nanmean(quads, axis=(2, 4)).astype(np.float32)
        levels.append(level)
    return levels


def _geotags(georef: Georef, stride: int, window: int) -> list:
    """The picture's georeference for the grid: its pixel (c, r) covers the stride-sized cell
    centred on the centre of the window at (c * stride, r * stride)."""
    a, b, c, d, e, f = georef.transform
    offset = (window - stride) / 2  # the picture position of the grid pixel's corner (0, 0)
    ta, tb, tc = a * stride, b * stride, a * offset + b * offset + c
    td, te, tf = d * stride, e * stride, d * offset + e * offset + f
    tags = []
    if tb == 0 and td == 0 and te < 0:  # north-up: a pixel size and one tie point, as most GIS write it
        tags += [(33550, "d", 3, (ta, -te, 0.0), True), (33922, "d", 6, (0.0, 0.0, 0.0, tc, tf, 0.0), True)]
    else:
        tags.append((34264, "d", 16, (ta, tb, 0.0, tc, td, te, 0.0, tf, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0), True))
    if georef.epsg is not None:
        geographic = 4000 <= georef.epsg < 5000
        keys = (1, 1, 0, 3, 1024, 0, 1, 2 if geographic else 1, 1025, 0, 1, 1,
                2048 if geographic else 3072, 0, 1, georef.epsg)
        tags.append((34735, "H", len(keys), keys, True))
    return tags


def heatmap_tiff(table: pa.Table, classes, background: str, *, stride: int, window: int,
                 georef: Georef | None) -> tuple[bytes, dict]:
    """The heat-map TIFF of a picture's scored windows, and what it holds (for the manifest)."""
    import tifffile

    bands, names = _grid(table, classes, background, stride)
    overviews = _overviews(bands)
    out = io.BytesIO()
    options = {"tile": (TILE, TILE), "compression": "zlib", "photometric": "minisblack", "planarconfig": "separate"}
    with tifffile.TiffWriter(out, bigtiff=bands.nbytes > 2**31) as tif:
        tif.write(bands, subifds=len(overviews), extratags=_geotags(georef, stride, window) if georef else (),
                  description=f"tilescan heat map: {', '.join(names)}", metadata=None, **options)
        for level in overviews:
            tif.write(level, subfiletype=1, metadata=None, **options)
    return out.getvalue(), {"file": HEATMAP_FILE, "bands": names, "width": bands.shape[2], "height": bands.shape[1],
                            "stride": stride, "overviews": len(overviews), "georeferenced": georef is not None}
