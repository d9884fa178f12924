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
from scoring.boxes import rounded

__all__ = ["detections_geojson"]

_FEATURE = ('{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[%r,%r],[%r,%r],[%r,%r],[%r,%r],[%r,%r]]]},'
            '"properties":{"class":%s,"score":%r,"image":%s,"pixels":[%r,%r,%r,%r]}}')


def detections_geojson(boxes: np.ndarray, classes, background: str, *, georef: Georef | None, image: str) -> bytes:
    """``(N, 6)`` boxes (``x0, y0, x1, y1, score, class index``; pixels, half-open) as a FeatureCollection."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 6)
    boxes = boxes[[classes[k] != background for k in boxes[:, 5].astype(int).tolist()]]
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    columns = np.stack([x0, x1, x1, x0, x0], axis=1)
    rows = np.stack([y0, y0, y1, y1, y0], axis=1)
    xs, ys = georef.to_map(columns, rows) if georef is not None else (columns, rows)
    rings = np.stack([xs, ys], axis=2).reshape(-1, 10).tolist()  # x, y of each corner in turn
    # Written from the arrays by one format string, as scoring.boxes writes COCO annotations: a
    # dict and json.dumps per box took a quarter of a second of a dense picture's 15,000 boxes.
    names, label = [json.dumps(c) for c in classes], json.dumps(image)
    features = ",\n".join(_FEATURE % (*ring, names[k], score, label, *box) for ring, k, score, box in
                           zip(rings, boxes[:, 5].astype(int).tolist(), rounded(boxes[:, 4], 6), boxes[:, :4].tolist()))
    about = {"tilescan": {"coordinates": "map" if georef is not None else "pixels",
                          "note": ("in the picture's own CRS, not reprojected" if georef is not None
                                   else "the picture has no georeference: coordinates are pixels, y down")}}
    if georef is not None and georef.epsg is not None:
        about["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{georef.epsg}"}}
    return ('{"type":"FeatureCollection",' + json.dumps(about, separators=(",", ":"))[1:-1]
            + ',"features":[\n' + features + "\n]}\n").encode()
