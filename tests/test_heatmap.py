"""--heatmap: each picture's scores as a tiled, compressed raster with overviews, a pixel per
window position at --stride, georeferenced like a GeoTIFF input, equal to windows.parquet."""
from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile

from pixels.georef import Georef, read_georef
from scoring.heatmap import HEATMAP_FILE, TILE, heatmap_grid, heatmap_rows, heatmap_tiff
from tests.test_georef import UTM, geotiff


def bands_of(page) -> np.ndarray:
    """A heat-map page as (band, row, column): GDAL's COG driver interleaves a pixel's bands."""
    array = page.asarray()
    return np.moveaxis(array, -1, 0) if page.axes.endswith("S") else array.reshape(-1, *array.shape[-2:])


def test_bands_send_their_grid_rows_which_make_the_picture_grid_with_nan_where_nothing_was_scored():
    xs, ys = np.meshgrid(np.arange(0, 700 * 8, 8), np.arange(0, 300 * 8, 8))
    scored = ~((xs == 80) & (ys == 40)).ravel()  # one position not scored
    origins = np.stack([xs.ravel(), ys.ravel()], axis=1)[scored]
    rng = np.random.default_rng(0)
    probs = rng.random((len(origins), 3), dtype=np.float32)
    classes = ("car", "background", "boat")
    # Two bands, and an off-grid window (the align policy's last column) the raster leaves out.
    upper = origins[:, 1] < 1000
    parts = [heatmap_rows(np.vstack([origins[part], [[5596, 0]]]), np.vstack([probs[part], [[1, 1, 1]]]), classes,
                          "background", 8) for part in (upper, ~upper)]
    assert [p.row0 for p in parts] == [0, 125] and parts[1].values.shape == (2, 175, 700)
    assert heatmap_rows(np.array([[4, 4]]), probs[:1], classes, "background", 8) is None
    grid = heatmap_grid(parts[::-1], 2)
    data, info = heatmap_tiff(grid, ("car", "boat"), stride=8, window=32, georef=None)
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
    order = np.lexsort((origins[:, 0], origins[:, 1]))  # row by row, as the raster holds them
    assert np.array_equal(bands[0][~np.isnan(bands[0])], probs[order, 0])
    assert np.array_equal(bands[1][~np.isnan(bands[1])], probs[order, 2])


@pytest.mark.slow
def test_heatmap_of_a_geotiff_run_holds_every_window_equals_the_kept_ones_and_keeps_the_georeference(
        spark, tmp_path, random_bundle_dir):
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare, run

    picture = geotiff(tmp_path / "scene.tif", 240, 176, scale=UTM["scale"], tie=UTM["tie"], keys=UTM["keys"], seed=4)
    out = tmp_path / "run"
    manifest = run(prepare(ScoreParams(image=picture, out=str(out), model=random_bundle_dir, keep=0.4, stride=16,
                                       heatmap=True, quiet=True)), spark)
    counts = manifest["counts"]
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
    # Every window of the grid (all of this picture's are on it), not only those --keep kept.
    assert 0 < on_grid == counts["windows_kept"] < counts["windows_scored"] == bands.shape[1] * bands.shape[2]
    assert not np.isnan(bands).any()
    # Without --heatmap, none: and a rerun over this one removes it.
    run(prepare(ScoreParams(image=picture, out=str(out), model=random_bundle_dir, overwrite=True, quiet=True)), spark)
    assert not (out / HEATMAP_FILE).exists()
