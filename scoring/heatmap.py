"""A picture's scores as a raster a GIS opens (``--heatmap``): ``heatmap.tif``.

One pixel per window position of the grid at ``--stride`` (the window at picture pixel
``(column * stride, row * stride)``), one float32 band per non-background class holding
that window's probability; windows off the grid (the ``align`` policy's last row and
column) are left out, and positions without a scored window are NaN (the nodata value). A
Cloud-Optimised GeoTIFF: tiled, Deflate compressed, with overviews (each half the size, by
averaging), and for a GeoTIFF picture with its georeference: the pixel size is the
stride's, and a pixel's centre is its window's centre on the map.

Each scoring task sends its band's part of the grid (:class:`HeatmapRows`, a few bytes per
window, every window whatever ``--keep`` drops from ``windows.parquet``); the task that
finishes the picture puts the parts together (:func:`heatmap_grid`), so that the raster never
needs the picture's every window as rows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from pixels.georef import Georef
from scoring.outputs import OPTIONAL_FILES

__all__ = ["HeatmapRows", "heatmap_rows", "heatmap_grid", "heatmap_tiff", "HEATMAP_FILE", "TILE"]

HEATMAP_FILE = OPTIONAL_FILES[0]
#: The raster's tile side; overviews are made down to one tile.
TILE = 256


@dataclass(frozen=True)
class HeatmapRows:
    """A band's rows of its picture's heat map: ``values[band, row - row0, column]``, float32,
    NaN where no window of the band lies."""

    row0: int
    values: np.ndarray


def heatmap_rows(origins: np.ndarray, probs: np.ndarray, classes, background: str,
                 stride: int) -> HeatmapRows | None:
    """The heat-map rows of a band's scored windows (``origins`` as ``(x, y)``, ``probs`` one
    column per class): its windows on the grid at ``stride``; ``None`` if none is."""
    x, y = origins[:, 0].astype(np.int64), origins[:, 1].astype(np.int64)
    on = (x % stride == 0) & (y % stride == 0)
    if not on.any():
        return None
    rows, columns = y[on] // stride, x[on] // stride
    row0 = int(rows.min())
    foreground = [k for k, c in enumerate(classes) if c != background]
    values = np.full((len(foreground), int(rows.max()) - row0 + 1, int(columns.max()) + 1), np.nan, np.float32)
    values[:, rows - row0, columns] = probs[on][:, foreground].T
    return HeatmapRows(row0, values)


def heatmap_grid(parts, bands: int) -> np.ndarray:
    """A picture's heat map, ``(bands, rows, columns)``, from its bands' :class:`HeatmapRows`."""
    parts = list(parts)
    height = max((p.row0 + p.values.shape[1] for p in parts), default=1)
    width = max((p.values.shape[2] for p in parts), default=1)
    grid = np.full((bands, height, width), np.nan, np.float32)
    for part in parts:
        rows, columns = part.values.shape[1:]
        grid[:, part.row0:part.row0 + rows, :columns] = part.values
    return grid


def _grid_transform(georef: Georef, stride: int, window: int) -> tuple:
    """The picture's georeference for the grid, as an affine ``(a, b, c, d, e, f)``: its pixel
    (c, r) covers the stride-sized cell centred on the centre of the window at (c * stride, r * stride)."""
    a, b, c, d, e, f = georef.transform
    offset = (window - stride) / 2  # the picture position of the grid pixel's corner (0, 0)
    return a * stride, b * stride, a * offset + b * offset + c, d * stride, e * stride, d * offset + e * offset + f


def heatmap_tiff(bands: np.ndarray, names, *, stride: int, window: int,
                 georef: Georef | None) -> tuple[bytes, dict]:
    """The heat-map Cloud-Optimised GeoTIFF of a picture's grid (:func:`heatmap_grid`; ``names``:
    its bands' classes), and what it holds (for the manifest). GDAL's COG driver (through
    rasterio) writes it: tiles, Deflate, overviews by averaging down to one tile, every IFD at
    the file's start and the smallest overview's tiles first, so that a GIS reads any part at
    any zoom with a few range requests."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine

    names = list(names)
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
