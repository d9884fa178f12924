"""A run over a georeferenced scene (:mod:`collage.scene`) read back against the scene's truth:
where its windows, its heat map and its boxes put each object on the map.

Positions per object, each compared with the object's known map position:

- the window of the grid that holds exactly the object (it lies on the stride's grid), placed
  on the map by the heat map's own georeference, and by ``windows.parquet``'s ``map_x,
  map_y`` where ``--keep`` kept it: both exact when the georeference is carried right; its
  class's score there (from the heat map, which holds every window), and whether that score
  peaks there, or on a neighbouring window that holds most of it;
- its box in ``detections.geojson``: the detector's box regression and merging move it by a
  few pixels, which the report gives in pixels.

It also checks the heat map against ``windows.parquet`` (equal on every window it kept), that
it holds every window of the grid (no NaN), and its georeference against the input's.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq

from collage.scene import Scene
from pixels.georef import read_georef
from scoring.results import probability_column

__all__ = ["scene_report"]


def _heatmap(run: str):
    import tifffile

    with tifffile.TiffFile(os.path.join(run, "heatmap.tif")) as tif:
        page = tif.pages[0]
        array = page.asarray()  # GDAL's COG driver interleaves a pixel's bands: (row, column, band)
        bands = np.moveaxis(array, -1, 0) if page.axes.endswith("S") else array.reshape(-1, *array.shape[-2:])
        return bands, read_georef(page)


def scene_report(run: str, scene: Scene, *, stride: int, window: int) -> dict:
    """The run's placement of each of the scene's objects, in input pixels (see the module's notes)."""
    with open(os.path.join(run, "manifest.json")) as fh:
        manifest = json.load(fh)
    with open(os.path.join(run, "detections.geojson")) as fh:
        features = json.load(fh)["features"]
    table = pq.read_table(os.path.join(run, "windows.parquet"))
    bands, heat_georef = _heatmap(run)
    names = manifest["heatmap"]["bands"]
    x, y = (table.column(n).to_numpy() for n in ("x", "y"))
    on_grid = (x % stride == 0) & (y % stride == 0)
    cells = (y[on_grid] // stride, x[on_grid] // stride)

    heat_vs_windows = max(float(np.max(np.abs(bands[k][cells] - table.column(probability_column(name))
                                             .to_numpy()[on_grid]))) for k, name in enumerate(names))
    offset = (window - stride) / 2
    expected = [scene.pixel_size * stride, 0.0, scene.to_map(offset, 0)[0],
                0.0, -scene.pixel_size * stride, scene.to_map(0, offset)[1]]
    georef_error = float(np.max(np.abs(np.asarray(heat_georef.transform) - expected)))

    at = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(x, y))}
    map_x, map_y = table.column("map_x").to_numpy(), table.column("map_y").to_numpy()
    rings = [np.asarray(f["geometry"]["coordinates"][0][:4], np.float64) for f in features]
    centres = np.array([ring.mean(axis=0) for ring in rings]).reshape(-1, 2)
    labels = np.array([f["properties"]["class"] for f in features])
    objects = []
    for obj in scene.objects:
        known = np.array(scene.to_map(*obj.centre))
        band = bands[names.index(obj.label)]
        # The object's own window (it lies on the grid), placed by the windows and by the heat map.
        r, c = obj.y // stride, obj.x // stride
        cell = np.array(heat_georef.to_map(c + 0.5, r + 0.5), dtype=np.float64).ravel()
        row = at.get((obj.x, obj.y))  # None: --keep left it out of windows.parquet
        # Where its class peaks around it: on its own window, or on a neighbour that holds most of it.
        r0, c0 = max(0, r - 2), max(0, c - 2)
        near = band[r0:r + 3, c0:c + 3]
        peak = np.unravel_index(np.nanargmax(near), near.shape)
        same = np.flatnonzero(labels == obj.label)
        box = None
        if len(same):
            distances = np.max(np.abs(centres[same] - known), axis=1)
            box = float(distances.min() / scene.pixel_size)
        objects.append({"label": obj.label, "x": obj.x, "y": obj.y, "score": float(band[r, c]),
                        "peak_on_its_window": bool(peak == (r - r0, c - c0)),
                        "heat_cell_error_px": float(np.max(np.abs(cell - known)) / scene.pixel_size),
                        "window_map_error_px": None if row is None else float(
                            max(abs(map_x[row] - known[0]), abs(map_y[row] - known[1])) / scene.pixel_size),
                        "box_centre_error_px": box})
    found = [o for o in objects if o["box_centre_error_px"] is not None and o["box_centre_error_px"] <= window / 2]
    errors = [o["box_centre_error_px"] for o in found]
    return {
        "objects": len(objects),
        "found": len(found),
        "boxes": len(features),
        "box_centre_error_px": {"max": max(errors, default=None),
                                "median": float(np.median(errors)) if errors else None,
                                "within_one_pixel": sum(e <= 1 for e in errors)},
        "heat_cell_error_px": max(o["heat_cell_error_px"] for o in objects),
        "window_map_error_px": max((o["window_map_error_px"] for o in objects
                                    if o["window_map_error_px"] is not None), default=None),
        "windows_kept": sum(o["window_map_error_px"] is not None for o in objects),
        "peak_on_its_window": sum(o["peak_on_its_window"] for o in objects),
        "scored_over_half": sum(o["score"] > 0.5 for o in objects),
        "heatmap_vs_windows": heat_vs_windows,
        "heatmap_nan": int(np.isnan(bands).sum()),
        "heatmap_georef_error": georef_error,
        "per_object": objects,
    }
