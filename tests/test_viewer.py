"""The zoomable viewer: its tile pyramid, its page, the folder a run writes in place, and the
page itself in a real headless Chromium (tiles at two zoom levels fetched and drawn, a box at
its place at full zoom, its class and score on hover, no console error), over HTTP and from a
disk."""
from __future__ import annotations

import io
import json
import os
import re
import time

import numpy as np
import pytest
from PIL import Image

from pixels import probe_image
from scoring.outputs import SUCCESS, RunWriter
from viewer import PYRAMID_NAME, load_assets, page_data, viewer_html, write_pyramid
from viewer import pyramid as pyramid_module
from viewer.assets import SCRIPT_NAME

CLASSES = ("background", "car", "boat")
COLORS = {"car": (255, 0, 0), "boat": (0, 255, 0)}
#: (x0, y0, x1, y1, score, class): a car and a boat.
BOXES = np.array([[1000, 600, 1064, 664, 0.93, 1], [2000, 1200, 2040, 1240, 0.41, 2]], np.float64)


def blocks(width: int, height: int) -> np.ndarray:
    """A picture of 100-pixel blocks, each of its own colour: a drawn tile shows where it is from."""
    yy, xx = np.mgrid[0:height, 0:width]
    bx, by = xx // 100, yy // 100
    return np.stack([(bx * 37 + 20) % 256, (by * 59 + 40) % 256, ((bx + by) * 23 + 60) % 256], -1).astype(np.uint8)


def tile(folder: str, level: int, column: int, row: int) -> np.ndarray:
    return np.asarray(Image.open(os.path.join(folder, f"{PYRAMID_NAME}_files", str(level), f"{column}_{row}.jpg")))


@pytest.fixture
def picture(tmp_path):
    pixels = blocks(3000, 2000)
    path = tmp_path / "blocks.png"
    Image.fromarray(pixels).save(path)
    return probe_image(str(path)), pixels


def test_pyramid_is_deepzoom_of_the_scored_pixels(tmp_path, picture):
    info, pixels = picture
    described = write_pyramid(info, str(tmp_path / "p"))
    assert described == {"tile_size": 510, "overlap": 1, "format": "jpg", "width": 3000, "height": 2000}
    levels = sorted(int(n) for n in os.listdir(tmp_path / "p" / f"{PYRAMID_NAME}_files") if n.isdigit())
    assert levels == list(range(13))  # DeepZoom: full size at level ceil(log2(3000)) = 12, one pixel at 0
    top = sorted(os.listdir(tmp_path / "p" / f"{PYRAMID_NAME}_files" / "12"))
    assert len(top) == 6 * 4  # ceil(3000 / 510) x ceil(2000 / 510)
    first = tile(str(tmp_path / "p"), 12, 0, 0)
    assert first.shape == (511, 511, 3)  # 510 and the overlap on its right and bottom only
    assert np.abs(first.astype(int) - pixels[:511, :511]).mean() < 3  # JPEG at Q=85
    inner = tile(str(tmp_path / "p"), 12, 2, 1)  # overlap on every side: it starts one pixel early
    assert np.abs(inner.astype(int) - pixels[509:1021, 1019:1531]).mean() < 3


def test_a_large_picture_is_tiled_from_bands_into_the_same_tiles(tmp_path, picture, monkeypatch):
    info, _ = picture
    write_pyramid(info, str(tmp_path / "whole"))
    monkeypatch.setattr(pyramid_module, "WHOLE_PIXELS", 0)
    monkeypatch.setattr(pyramid_module, "_BAND_PIXELS", 3000 * 600)  # bands of 512 rows
    write_pyramid(info, str(tmp_path / "bands"))

    def files(root):
        found = {}
        for parent, _, names in os.walk(root):
            for name in names:
                with open(os.path.join(parent, name), "rb") as fh:
                    found[os.path.relpath(os.path.join(parent, name), root)] = fh.read()
        return found

    whole, banded = files(tmp_path / "whole"), files(tmp_path / "bands")
    assert whole.keys() == banded.keys() and len(whole) > 30
    assert all(whole[name] == banded[name] for name in whole)
    assert not [n for n in os.listdir(tmp_path / "bands") if n.endswith(".tif")]  # the local copy is gone


def test_a_large_pictures_pyramid_is_made_in_a_process_of_its_own(tmp_path, picture):
    import dataclasses

    from core.errors import TilescanError
    from viewer import write_pyramid_apart

    info, _ = picture
    described = write_pyramid(info, str(tmp_path / "here"))
    assert write_pyramid_apart(info, str(tmp_path / "apart")) == described
    here = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*.jpg"))
    assert here == sorted(p.relative_to(tmp_path / "apart") for p in (tmp_path / "apart").rglob("*.jpg"))
    assert all((tmp_path / "here" / p).read_bytes() == (tmp_path / "apart" / p).read_bytes() for p in here)
    gone = dataclasses.replace(info, url=str(tmp_path / "gone.png"))
    with pytest.raises(TilescanError, match=r"^the viewer's pyramid of .*gone.png failed: [^\n]+$"):
        write_pyramid_apart(gone, str(tmp_path / "gone"))


def test_page_holds_the_boxes_and_escapes_the_name():
    name = "a</script><b>{{DATA}}"
    data = page_data(BOXES, CLASSES, "background", COLORS, name=name,
                     pyramid={"tile_size": 510, "overlap": 1, "format": "jpg", "width": 3000, "height": 2000},
                     folder="viewer-0123456789ab")
    page = viewer_html(load_assets().template, data).decode()
    assert "</script><b>" not in page
    block = re.search(r'<script id="run-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    held = json.loads(block)
    assert held["name"] == name
    assert held["boxes"] == [[1000, 600, 1064, 664, 0.93, 1], [2000, 1200, 2040, 1240, 0.41, 2]]
    assert held["colors"] == {"car": "#ff0000", "boat": "#00ff00"} and held["shown"] == [1, 2]
    assert '<script src="viewer-0123456789ab/openseadragon.min.js">' in page
    assert held["tiles"]["url"] == "viewer-0123456789ab/tiles_files/"


def _commit_viewer(root: str, run_id: str, *, viewer: bool = True, overwrite: bool = False) -> RunWriter:
    writer = RunWriter(root, run_id=run_id, overwrite=overwrite)
    writer.check()
    if viewer:
        local = os.path.join(root + "-local-" + run_id)
        os.makedirs(os.path.join(local, "tiles_files", "0"))
        with open(os.path.join(local, "tiles_files", "0", "0_0.jpg"), "wb") as fh:
            fh.write(b"tile of " + run_id.encode())
        writer.write_folder(local)
        writer.write("viewer.html", b"page")
    writer.write("manifest.json", json.dumps({"tool": "tilescan", "run_id": run_id}).encode())
    writer.commit()
    return writer


def test_viewer_folder_is_written_in_place_and_replaced_with_its_run(tmp_path):
    root = str(tmp_path / "run")
    first = _commit_viewer(root, "a" * 32)
    assert sorted(os.listdir(root)) == sorted([SUCCESS, "_tilescan", "manifest.json", "viewer.html", first.folder_name])
    second = _commit_viewer(root, "b" * 32, overwrite=True)
    assert first.folder_name not in os.listdir(root) and second.folder_name in os.listdir(root)
    with open(os.path.join(root, second.folder_name, "tiles_files", "0", "0_0.jpg"), "rb") as fh:
        assert fh.read() == b"tile of " + b"b" * 32
    _commit_viewer(root, "c" * 32, viewer=False, overwrite=True)  # --no-viewer: the replaced viewer goes
    assert not [n for n in os.listdir(root) if n.startswith("viewer")]


def test_an_aborted_run_leaves_no_viewer_folder(tmp_path):
    root = str(tmp_path / "run")
    writer = RunWriter(root, run_id="d" * 32)
    writer.check()
    local = tmp_path / "local"
    (local / "tiles_files" / "0").mkdir(parents=True)
    (local / "tiles_files" / "0" / "0_0.jpg").write_bytes(b"x")
    writer.write_folder(str(local))
    assert os.path.isdir(os.path.join(root, writer.folder_name))
    writer.abort()
    assert not os.path.exists(root)


# --- the page in a real browser -------------------------------------------------------------


def _viewer_run(folder, picture) -> str:
    """A run's viewer files for ``picture`` in ``folder``, as a picture's finish writes them."""
    info, _ = picture
    name = "viewer-0123456789ab"
    described = write_pyramid(info, os.path.join(folder, name))
    assets = load_assets()
    with open(os.path.join(folder, name, SCRIPT_NAME), "wb") as fh:
        fh.write(assets.script)
    page = viewer_html(assets.template, page_data(BOXES, CLASSES, "background", COLORS, name="blocks.png",
                                                  pyramid=described, folder=name))
    with open(os.path.join(folder, "viewer.html"), "wb") as fh:
        fh.write(page)
    return name


def _wait_drawn(driver, timeout: float = 30.0) -> None:
    """Until the picture's tiles for the current view are loaded, and a frame later drawn."""
    deadline = time.time() + timeout
    script = ("const v = window.tilescanViewer; return !!v && v.world.getItemCount() === 1 && "
              "v.world.getItemAt(0).getFullyLoaded();")
    while not driver.execute_script(script):
        assert time.time() < deadline, "the viewer's tiles did not load"
        time.sleep(0.1)
    driver.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")


def _screen(driver) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")).astype(int)


def _element_point(driver, x: float, y: float) -> tuple[int, int]:
    at = driver.execute_script("const v = window.tilescanViewer; const p = v.viewport.imageToViewerElementCoordinates("
                               "new OpenSeadragon.Point(arguments[0], arguments[1])); return [p.x, p.y];", x, y)
    return round(at[0]), round(at[1])


def _levels(requested: list, folder: str) -> set:
    found = (re.match(rf"/{folder}/{PYRAMID_NAME}_files/(\d+)/\d+_\d+\.jpg$", path) for path in requested)
    return {int(m.group(1)) for m in found if m}


@pytest.mark.slow
def test_viewer_draws_tiles_at_two_levels_and_names_a_box_on_hover(tmp_path, picture, browser, http_folder):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tests.browser import WINDOW_SIZE, console_errors

    _, pixels = picture
    folder = _viewer_run(str(tmp_path), picture)
    base, requested = http_folder(str(tmp_path))
    browser.get(f"{base}/viewer.html")
    _wait_drawn(browser)
    home = _levels(requested, folder)
    assert home and max(home) < 12  # the whole picture fits the window: a reduced level
    x, y = _element_point(browser, 1550, 1050)  # a block's centre
    assert np.abs(_screen(browser)[y, x] - pixels[1050, 1550]).max() <= 12

    # Full zoom (one picture pixel per screen pixel) on the car.
    browser.execute_script("const v = window.tilescanViewer; v.viewport.zoomTo(v.viewport.imageToViewportZoom(1), "
                           "null, true); v.viewport.panTo(v.viewport.imageToViewportCoordinates(1032, 632), true);")
    _wait_drawn(browser)
    assert 12 in _levels(requested, folder) - home  # the full-resolution level, fetched now
    screen = _screen(browser)
    # The view fills the window from its top left corner: the car's centre is the view's.
    cx, cy = (round(n / 2) for n in browser.execute_script(
        "const v = document.getElementById('view'); return [v.clientWidth, v.clientHeight];"))
    assert screen.shape[:2] == (2 * cy, 2 * cx) or screen.shape[1] == WINDOW_SIZE[0]
    # The car's outline, 32 screen pixels left of the centre, in the car's colour.
    left = screen[cy - 10:cy + 10, cx - 34:cx - 29]
    assert ((left[..., 0] > 200) & (left[..., 1] < 60) & (left[..., 2] < 60)).any(axis=1).all()
    # Inside the box: the picture's own pixels, drawn from the full-resolution tiles.
    assert np.abs(screen[cy + 8, cx + 8] - pixels[640, 1040]).max() <= 12

    view = browser.find_element(By.ID, "view")
    ActionChains(browser).move_to_element(view).move_by_offset(3, 3).perform()
    tip = browser.find_element(By.ID, "tip")
    assert tip.is_displayed() and tip.text.startswith("car 0.930")
    ActionChains(browser).move_by_offset(200, 0).perform()  # off the box: the tip goes
    assert not tip.is_displayed()

    # The score filter hides the boat (0.41) and keeps the car.
    browser.execute_script("const s = document.getElementById('min-score'); s.value = 0.5; "
                           "s.dispatchEvent(new Event('input'));")
    assert browser.find_element(By.ID, "shown").text == "1 of 2 boxes shown"
    assert console_errors(browser) == []


@pytest.mark.slow
def test_viewer_opens_from_a_disk(tmp_path, picture, browser):
    from tests.browser import console_errors

    _, pixels = picture
    _viewer_run(str(tmp_path), picture)
    browser.get((tmp_path / "viewer.html").as_uri())
    _wait_drawn(browser)
    x, y = _element_point(browser, 1550, 1050)
    assert np.abs(_screen(browser)[y, x] - pixels[1050, 1550]).max() <= 12
    assert console_errors(browser) == []


@pytest.mark.slow
@pytest.mark.spark
def test_a_resume_keeps_only_pictures_with_the_outputs_this_run_writes(spark, tmp_path, random_bundle_dir):
    from core.errors import InputError
    from scoring.api import score_images
    from tests.conftest import write_noise_png

    folder, out = tmp_path / "in", tmp_path / "run"
    folder.mkdir()
    for k in range(2):
        write_noise_png(folder / f"p{k}.png", 96, 64, seed=k)
    score_images(spark, str(folder), str(out), model=random_bundle_dir, viewer=False, quiet=True)
    assert not (out / "p0" / "viewer.html").exists()
    # Finished without the viewer: a resume that would write it cannot keep them as they are.
    with pytest.raises(InputError, match=r"was scored with --no-viewer True, this run with False"):
        score_images(spark, str(folder), str(out), model=random_bundle_dir, resume=True, quiet=True)
    kept = score_images(spark, str(folder), str(out), model=random_bundle_dir, viewer=False, resume=True, quiet=True)
    assert [p["status"] for p in kept.pictures] == ["skipped", "skipped"]
