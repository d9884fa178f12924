"""--heatmap: each picture's scores as a tiled, compressed raster with overviews, a pixel per
window position at --stride, georeferenced like a GeoTIFF input, equal to windows.parquet."""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile

from pixels.georef import Georef, read_georef
from scoring.heatmap import HEATMAP_FILE, TILE, heatmap_tiff
from tests.test_georef import UTM, geotiff


def bands_of(page) -> np.ndarray:
    """A heat-map page as (band, row, column): GDAL's COG driver interleaves a pixel's bands."""
    array = page.asarray()
    return np.moveaxis(array, -1, 0) if page.axes.endswith("S") else array.reshape(-1, *array.shape[-2:])


def test_a_large_grid_gets_tiles_overviews_and_nan_where_no_window_was_scored():
    xs, ys = np.meshgrid(np.arange(0, 700 * 8, 8), np.arange(0, 300 * 8, 8))
    keep = ~((xs == 80) & (ys == 40)).ravel()  # one position not scored
    n = int(keep.sum())
    rng = np.random.default_rng(0)
    table = pa.table({"x": xs.ravel()[keep].astype(np.int32), "y": ys.ravel()[keep].astype(np.int32),
                      "p_car": rng.random(n, dtype=np.float32), "p_boat": rng.random(n, dtype=np.float32),
                      "p_background": np.zeros(n, np.float32)})
    data, info = heatmap_tiff(table, ("car", "boat", "background"), "background", stride=8, window=32, georef=None)
    assert info["bands"] == ["car", "boat"] and (info["width"], info["height"]) == (700, 300)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (TILE, TILE)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert [level.shape for level in tif.series[0].levels] == [(300, 700, 2), (150, 350, 2), (75, 175, 2)]
        bands = bands_of(page)
        assert read_georef(page) is None
        # Cloud-optimised: every IFD before any tile's data, and the smallest overview's tiles first.
        levels = [level.pages[0] for level in tif.series[0].levels]
        first_tile = [min(level.dataoffsets) for level in levels]
        assert max(level.offset for level in levels) < min(first_tile)
        assert first_tile == sorted(first_tile, reverse=True)
    import warnings

    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # this one has no georeference
        memory = rasterio.MemoryFile(data)
        raster = memory.open()
    with memory, raster:
        assert raster.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and raster.overviews(1) == [2, 4]
        assert raster.descriptions == ("car", "boat") and np.isnan(raster.nodata)
    assert np.isnan(bands[:, 5, 10]).all()
    assert np.array_equal(bands[0][~np.isnan(bands[0])], table.column("p_car").to_numpy()[
        np.lexsort((table.column("x").to_numpy(), table.column("y").to_numpy()))])


@pytest.mark.slow
def test_heatmap_of_a_geotiff_run_equals_its_windows_and_keeps_its_georeference(spark, tmp_path, random_bundle_dir):
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare, run

    picture = geotiff(tmp_path / "scene.tif", 240, 176, scale=UTM["scale"], tie=UTM["tie"], keys=UTM["keys"], seed=4)
    out = tmp_path / "run"
    manifest = run(prepare(ScoreParams(image=picture, out=str(out), model=random_bundle_dir, keep=0.0, stride=16,
                                       heatmap=True, quiet=True)), spark)
    assert manifest["heatmap"]["file"] == HEATMAP_FILE
    windows = pq.read_table(out / "windows.parquet").to_pydict()
    with tifffile.TiffFile(out / HEATMAP_FILE) as tif:
        bands = bands_of(tif.pages[0])
        georef = read_georef(tif.pages[0])
    # A pixel of the raster is a stride-sized cell around its window's centre, on the picture's map.
    picture_georef = Georef((10.0, 0.0, 500_000.0, 0.0, -10.0, 4_649_776.0), 32633)
    assert georef.epsg == 32633 and georef.transform[0] == 160.0 and georef.transform[4] == -160.0
    on_grid = 0
    for x, y, w, h, car, boat in zip(windows["x"], windows["y"], windows["width"], windows["height"],
                                     windows["p_car"], windows["p_boat"]):
        if x % 16 or y % 16:
            continue
        on_grid += 1
        column, row = x // 16, y // 16
        assert bands[0, row, column] == car and bands[1, row, column] == boat
        assert georef.to_map(column + 0.5, row + 0.5) == pytest.approx(picture_georef.to_map(x + w / 2, y + h / 2))
    assert on_grid == bands.shape[1] * bands.shape[2]
    # Without --heatmap, none: and a rerun over this one removes it.
    run(prepare(ScoreParams(image=picture, out=str(out), model=random_bundle_dir, overwrite=True, quiet=True)), spark)
    assert not (out / HEATMAP_FILE).exists()
