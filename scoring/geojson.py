"""A picture's boxes as GeoJSON (``detections.geojson``), for a GIS.

Each box is a polygon (its four corners, closed) with its class and score as properties. A
georeferenced picture's boxes are in its own CRS (not reprojected), named in a ``crs``
member as GDAL and QGIS read it; RFC 7946 asks for WGS84 longitude and latitude, which
this is only for an EPSG:4326 picture. A picture without georeference gets its boxes in
pixel coordinates (x to the right, y down), and the file says so.
"""
from __future__ import annotations

import json

import numpy as np

from pixels.georef import Georef

__all__ = ["detections_geojson"]


def detections_geojson(boxes: np.ndarray, classes, background: str, *, georef: Georef | None, image: str) -> bytes:
    """``(N, 6)`` boxes (``x0, y0, x1, y1, score, class index``; pixels, half-open) as a FeatureCollection."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 6)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    columns = np.stack([x0, x1, x1, x0, x0], axis=1)
    rows = np.stack([y0, y0, y1, y1, y0], axis=1)
    xs, ys = georef.to_map(columns, rows) if georef is not None else (columns, rows)
    features = [{"type": "Feature",
                 "geometry": {"type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in zip(xr, yr)]]},
                 "properties": {"class": classes[int(k)], "score": round(float(s), 6), "image": image,
                                "pixels": [float(a), float(b), float(c), float(d)]}}
                for xr, yr, (a, b, c, d, s, k) in zip(xs.tolist(), ys.tolist(), boxes.tolist())
                if classes[int(k)] != background]
    doc = {"type": "FeatureCollection", "features": features,
           "tilescan": {"coordinates": "map" if georef is not None else "pixels",
                        "note": ("in the picture's own CRS, not reprojected" if georef is not None
                                 else "the picture has no georeference: coordinates are pixels, y down")}}
    if georef is not None and georef.epsg is not None:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{georef.epsg}"}}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()
