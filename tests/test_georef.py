"""Georeferenced inputs, georeferenced outputs: a GeoTIFF's transform and CRS are read, each
window's centre gets map coordinates, and the boxes go out as GeoJSON in the picture's CRS.

The GeoTIFFs are made here with tifffile: north-up in UTM zone 33N (EPSG:32633) with a tie
point and a pixel size, in EPSG:4326 (degrees), and with a ModelTransformation matrix.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile

from pixels import probe_image
from pixels.georef import Georef, read_georef
from scoring.params import ScoreParams

UTM = {"scale": (10.0, 10.0, 0.0), "tie": (0.0, 0.0, 0.0, 500_000.0, 4_649_776.0, 0.0),
       "keys": (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633)}
WGS84 = {"scale": (0.0001, 0.0001, 0.0), "tie": (0.0, 0.0, 0.0, 12.5, 41.9, 0.0),
         "keys": (1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 1, 2048, 0, 1, 4326)}


def geotiff(path, width: int, height: int, *, scale=None, tie=None, matrix=None, keys=None, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    pixels = np.ascontiguousarray(coarse.repeat(8, 0).repeat(8, 1)[:height, :width])
    tags = []
    if scale is not None:
        tags += [(33550, "d", 3, scale, True), (33922, "d", 6, tie, True)]
    if matrix is not None:
        tags.append((34264, "d", 16, matrix, True))
    if keys is not None:
        tags.append((34735, "H", len(keys), keys, True))
    tifffile.imwrite(path, pixels, tile=(64, 64), compression="zlib", photometric="rgb", extratags=tags)
    return str(path)


@pytest.mark.parametrize("crs, epsg", [(UTM, 32633), (WGS84, 4326)])
def test_a_geotiffs_transform_and_crs_are_read(crs, epsg, tmp_path):
    path = geotiff(tmp_path / "g.tif", 128, 96, scale=crs["scale"], tie=crs["tie"], keys=crs["keys"])
    info = probe_image(path)
    georef = Georef.from_json(info.georef)
    assert georef.epsg == epsg
    sx, sy = crs["scale"][:2]
    x0, y0 = crs["tie"][3:5]
    assert georef.to_map(0, 0) == (pytest.approx(x0), pytest.approx(y0))
    assert georef.to_map(128, 96) == (pytest.approx(x0 + 128 * sx), pytest.approx(y0 - 96 * sy))


def test_a_model_transformation_and_pixel_is_point_are_read(tmp_path):
    matrix = (2.0, 0.5, 0.0, 1000.0, 0.0, -2.0, 0.0, 2000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    path = geotiff(tmp_path / "m.tif", 64, 64, matrix=matrix, keys=(1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633))
    with tifffile.TiffFile(path) as tif:
        georef = read_georef(tif.pages[0])
    assert georef.transform == (2.0, 0.5, 1000.0, 0.0, -2.0, 2000.0)
    # PixelIsPoint: the tie point is a pixel's centre, so the corner lies half a pixel up and left.
    point = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2, 3072, 0, 1, 32633)
    path = geotiff(tmp_path / "p.tif", 64, 64, scale=UTM["scale"], tie=UTM["tie"], keys=point)
    with tifffile.TiffFile(path) as tif:
        georef = read_georef(tif.pages[0])
    assert georef.to_map(0, 0) == (pytest.approx(500_000.0 - 5.0), pytest.approx(4_649_776.0 + 5.0))


def test_a_tiff_without_georeference_has_none(tmp_path):
    assert probe_image(geotiff(tmp_path / "plain.tif", 64, 64)).georef is None


@pytest.mark.slow
@pytest.mark.parametrize("crs", ["utm", "none"])
def test_a_run_writes_map_coordinates_and_geojson_in_the_pictures_crs(crs, spark, tmp_path, random_bundle_dir):
    from scoring.pipeline import prepare, run

    picture = geotiff(tmp_path / "scene.tif", 224, 160, seed=3,
                      **({"scale": UTM["scale"], "tie": UTM["tie"], "keys": UTM["keys"]} if crs == "utm" else {}))
    out = tmp_path / "run"
    manifest = run(prepare(ScoreParams(image=picture, out=str(out), model=random_bundle_dir, keep=0.0,
                                       threshold={"*": 0.34}, quiet=True)), spark)
    windows = pq.read_table(out / "windows.parquet")
    doc = json.loads((out / "detections.geojson").read_text())
    coco = json.loads((out / "detections.json").read_text())["annotations"]
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(coco) > 0
    if crs == "none":
        assert manifest["input"]["georef"] is None and "map_x" not in windows.column_names
        assert doc["tilescan"]["coordinates"] == "pixels" and "crs" not in doc
        first = doc["features"][0]["geometry"]["coordinates"][0]
        x, y, w, h = coco[0]["bbox"]
        assert first[0] == pytest.approx([x, y], abs=0.01) and first[2] == pytest.approx([x + w, y + h], abs=0.01)
        return
    assert manifest["input"]["georef"] == {"transform": [10.0, 0.0, 500_000.0, 0.0, -10.0, 4_649_776.0],
                                           "epsg": 32633}
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    rows = windows.to_pydict()
    for x, y, w, h, mx, my in zip(rows["x"], rows["y"], rows["width"], rows["height"], rows["map_x"], rows["map_y"]):
        assert mx == pytest.approx(500_000.0 + 10 * (x + w / 2)) and my == pytest.approx(4_649_776.0 - 10 * (y + h / 2))
    for feature, annotation in zip(doc["features"], coco):
        x, y, w, h = annotation["bbox"]
        ring = feature["geometry"]["coordinates"][0]
        assert len(ring) == 5 and ring[0] == ring[4]
        assert ring[0] == pytest.approx([500_000.0 + 10 * x, 4_649_776.0 - 10 * y], abs=0.1)
        assert ring[2] == pytest.approx([500_000.0 + 10 * (x + w), 4_649_776.0 - 10 * (y + h)], abs=0.1)
        assert feature["properties"]["score"] == pytest.approx(annotation["score"], abs=1e-6)
