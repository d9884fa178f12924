"""Where a GeoTIFF's pixels are on the map: its affine transform and its CRS (an EPSG code).

A GeoTIFF says it with tags that tifffile decodes (``TiffPage.geotiff_tags``): the pixel
size (ModelPixelScale) with one tie point (ModelTiepoint), or a whole 4 x 4 matrix
(ModelTransformation); the CRS as a GeoKey (ProjectedCSTypeGeoKey for a projected one such
as UTM, GeographicTypeGeoKey for latitude and longitude such as EPSG:4326). Nothing is
reprojected: map coordinates are in the picture's own CRS.

The transform maps a pixel position (column, row; the top-left corner of the picture is
0, 0, pixel centres at half units) to map coordinates::

    x = a * column + b * row + c
    y = d * column + e * row + f

A picture tagged PixelIsPoint has its tie point at a pixel's centre, and is shifted by half
a pixel to this corner convention, as GDAL does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Georef", "read_georef"]

_RASTER_PIXEL_IS_POINT = 2


@dataclass(frozen=True)
class Georef:
    """A picture's pixel-to-map transform ``(a, b, c, d, e, f)`` and its CRS's EPSG code (None: not given)."""

    transform: tuple
    epsg: int | None

    def to_map(self, columns, rows) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of pixel positions (arrays of the same shape)."""
        a, b, c, d, e, f = self.transform
        columns, rows = np.asarray(columns, np.float64), np.asarray(rows, np.float64)
        return a * columns + b * rows + c, d * columns + e * rows + f

    def to_json(self) -> dict:
        return {"transform": list(self.transform), "epsg": self.epsg}

    @classmethod
    def from_json(cls, doc: dict | None) -> Georef | None:
        return None if not doc else cls(tuple(float(v) for v in doc["transform"]), doc.get("epsg"))


def _number(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_georef(page) -> Georef | None:
    """The georeference of a tifffile page, or None when it has none (or only part of one)."""
    try:
        tags = page.geotiff_tags
    except Exception:  # noqa: BLE001 - tifffile's decoding of damaged GeoKeys raises its own kinds
        return None
    if not tags:
        return None
    matrix = tags.get("ModelTransformation")
    if matrix is not None and np.size(matrix) == 16:
        m = np.asarray(matrix, np.float64).reshape(4, 4)
        transform = (m[0, 0], m[0, 1], m[0, 3], m[1, 0], m[1, 1], m[1, 3])
    else:
        scale, tie = tags.get("ModelPixelScale"), tags.get("ModelTiepoint")
        if scale is None or tie is None or np.size(scale) < 2 or np.size(tie) < 6:
            return None
        sx, sy = float(np.ravel(scale)[0]), float(np.ravel(scale)[1])
        i, j, _, x, y, _ = (float(v) for v in np.ravel(tie)[:6])
        transform = (sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy)
    a, b, c, d, e, f = (float(v) for v in transform)
    if _number(tags.get("GTRasterTypeGeoKey")) == _RASTER_PIXEL_IS_POINT:
        c, f = c - (a + b) / 2, f - (d + e) / 2
    epsg = _number(tags.get("ProjectedCSTypeGeoKey")) or _number(tags.get("GeographicTypeGeoKey"))
    if epsg in (None, 32767):  # 32767: "user-defined", described by other keys
        epsg = None
    return Georef((a, b, c, d, e, f), epsg)
