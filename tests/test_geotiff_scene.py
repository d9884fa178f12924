"""The georeferenced acceptance run at a size the suite affords: a tiled UTM GeoTIFF with CIFAR-10
cars and boats at known map positions, scored with --heatmap by the default model.
(``python -m benchmarks.geotiff`` runs it at 20,000 x 20,000 and samples the memory.)

The windows and the heat map put every object at its map position exactly (it lies on the
stride's grid); the boxes of detections.geojson by the detector's few pixels of box regression;
the heat map holds every window, equals windows.parquet on the windows it kept, and carries
the input's georeference; the viewer, opened in Chromium from the disk, draws a box around an
object at full zoom."""
from __future__ import annotations

import os

import numpy as np
import pytest

from collage.scene import place_objects, write_scene_geotiff
from evaluation.scene import scene_report
from tests.conftest import needs_cifar
from tilesets import data_root, load_cifar

SIDE, OBJECTS, STRIDE, WINDOW = 2048, 12, 16, 32
ORIGIN, PIXEL = (500_000.0, 4_650_000.0), 0.5  # UTM 33N, half a metre per pixel


@pytest.fixture(scope="module")
def scored_scene(tmp_path_factory, spark):
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare, run

    folder = tmp_path_factory.mktemp("scene")
    library = load_cifar(os.path.join(data_root(), "cifar10"), "test")
    objects = place_objects(library, ("car", "boat"), OBJECTS, SIDE, grid=STRIDE, seed=3)
    scene = write_scene_geotiff(str(folder / "scene.tif"), SIDE, objects, library, origin=ORIGIN, pixel_size=PIXEL,
                                epsg=32633)
    run(prepare(ScoreParams(image=str(folder / "scene.tif"), out=str(folder / "run"), stride=STRIDE,
                            heatmap=True, quiet=True)), spark)
    return scene, str(folder / "run")


@needs_cifar
@pytest.mark.slow
@pytest.mark.data
@pytest.mark.spark
def test_windows_heatmap_and_boxes_put_the_objects_at_their_map_positions(scored_scene):
    scene, out = scored_scene
    report = scene_report(out, scene, stride=STRIDE, window=WINDOW)
    assert report["heatmap_vs_windows"] == 0.0 and report["heatmap_georef_error"] < 1e-6
    assert report["heatmap_nan"] == 0 and report["windows_kept"] == OBJECTS
    assert report["window_map_error_px"] == 0.0 and report["heat_cell_error_px"] == 0.0
    assert report["scored_over_half"] == OBJECTS and report["peak_on_its_window"] >= OBJECTS - 1
    assert report["found"] == OBJECTS  # a box of its class within half a window of each
    assert report["box_centre_error_px"]["median"] < 3  # the detector's box regression: a few pixels


@needs_cifar
@pytest.mark.slow
@pytest.mark.data
@pytest.mark.spark
def test_the_viewer_draws_a_box_around_an_object_at_full_zoom(scored_scene, browser):
    from tests.browser import console_errors
    from tests.test_viewer import _screen, _wait_drawn

    scene, out = scored_scene
    obj = scene.objects[0]
    color = {"car": (255, 0, 0), "boat": (0, 255, 0)}[obj.label]  # the default colours
    browser.get("file://" + os.path.join(out, "viewer.html"))
    _wait_drawn(browser)
    browser.execute_script("const v = window.tilescanViewer; v.viewport.zoomTo(v.viewport.imageToViewportZoom(1), "
                           "null, true); v.viewport.panTo(v.viewport.imageToViewportCoordinates(arguments[0], "
                           "arguments[1]), true);", *obj.centre)
    _wait_drawn(browser)
    w, h = browser.execute_script("const v = document.getElementById('view'); return [v.clientWidth, v.clientHeight];")
    # At full zoom the object's 32 pixels are the 32 screen pixels around the view's centre: its
    # box's outline, in its class's colour, runs on all four sides of it (within the detector's
    # few pixels), and the object's own pixels are inside.
    x0, y0 = round(w / 2) - 28, round(h / 2) - 28
    near = _screen(browser)[y0:y0 + 56, x0:x0 + 56]
    rows, cols = np.nonzero(np.all(np.abs(near - color) < 40, axis=-1))
    assert len(rows) > 60
    assert cols.min() < 20 and cols.max() > 36 and rows.min() < 20 and rows.max() > 36
    assert console_errors(browser) == []
