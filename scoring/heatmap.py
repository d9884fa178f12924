"""A picture's scores as a raster a GIS opens (``--heatmap``): ``heatmap.tif``.

One pixel per window position of the grid at ``--stride`` (the window at picture pixel
``(column * stride, row * stride)``), one float32 band per non-background class holding
that window's probability; windows off the grid (the ``align`` policy's last row and
column) are left out, and positions without a scored window are NaN (the nodata value). A
Cloud-Optimised GeoTIFF: tiled, Deflate compressed, with overviews (each half the size, by
averaging), and for a GeoTIFF picture with its georeference: the pixel size is the
stride's, and a pixel's centre is its window's centre on the map.
"""
from __future__ import annotations

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


def _grid_transform(georef: Georef, stride: int, window: int) -> tuple:
    """The picture's georeference for the grid, as an affine ``(a, b, c, d, e, f)``: its pixel
    (c, r) covers the stride-sized cell centred on the centre of the window at (c * stride, r * stride)."""
    a, b, c, d, e, f = georef.transform
    offset = (window - stride) / 2  # the picture position of the grid pixel's corner (0, 0)
    return a * stride, b * stride, a * offset + b * offset + c, d * stride, e * stride, d * offset + e * offset + f


def heatmap_tiff(table: pa.Table, classes, background: str, *, stride: int, window: int,
                 georef: Georef | None) -> tuple[bytes, dict]:
    """The heat-map Cloud-Optimised GeoTIFF of a picture's scored windows, and what it holds (for
    the manifest). GDAL's COG driver (through rasterio) writes it: tiles, Deflate, overviews by
    averaging down to one tile, every IFD at the file's start and the smallest overview's tiles
    first, so that a GIS reads any part at any zoom with a few range requests."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine

    bands, names = _grid(table, classes, background, stride)
    profile = {"driver": "COG", "count": len(names), "height": bands.shape[1], "width": bands.shape[2],
               "dtype": "float32", "nodata": float("nan"), "blocksize": TILE, "compress": "deflate",
               "predictor": 3, "overview_resampling": "average", "bigtiff": "if_safer"}
    if georef is not None:
        profile["transform"] = Affine(*_grid_transform(georef, stride, window))
        if georef.epsg is not None:
            profile["crs"] = rasterio.crs.CRS.from_epsg(georef.epsg)
    with warnings.catch_warnings(), MemoryFile() as memory:
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a picture without georeference
        with memory.open(**profile) as raster:
            raster.write(bands)
            raster.descriptions = tuple(names)
            raster.update_tags(description=f"tilescan heat map: {', '.join(names)}")
        with memory.open() as written:
            overviews = len(written.overviews(1))
        data = memory.read()
    return data, {"file": HEATMAP_FILE, "bands": names, "width": bands.shape[2], "height": bands.shape[1],
                  "stride": stride, "overviews": overviews, "georeferenced": georef is not None,
                  "layout": "COG"}
