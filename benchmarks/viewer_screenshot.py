"""README's screenshot of the viewer: a synthetic scene (fields, a road with toy cars seen from
above, a river with toy boats; nothing of CIFAR-10 or the Mona Lisa, which may not be committed)
scored by the default model, its viewer.html opened in headless Chromium, zoomed in, with the
pointer on the best box.

    python -m benchmarks.viewer_screenshot [--out docs/images/viewer.png]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import spark_env
from core.project import ROOT, project_path

__all__ = ["toy_scene", "main"]

SIDE = 1536


def toy_scene(path: str, *, seed: int = 5) -> str:
    """Fields, a road with 40 toy cars and a river with 20 toy boats, ``SIDE`` pixels square."""
    from PIL import Image, ImageDraw

    from collage.scene import TILE, field_tile

    rng = np.random.default_rng(seed)
    tiles = SIDE // TILE
    ground = np.concatenate([np.concatenate([field_tile(ty, tx, seed) for tx in range(tiles)], 1)
                             for ty in range(tiles)], 0)
    image = Image.fromarray(ground)
    draw = ImageDraw.Draw(image)
    river = [(x, int(900 + 120 * np.sin(x / 230))) for x in range(0, SIDE, 4)]
    for x, y in river:
        draw.ellipse((x - 60, y - 60, x + 60, y + 60), fill=(40, 80, 140))
    draw.rectangle((0, 380, SIDE, 420), fill=(90, 90, 95))
    draw.rectangle((700, 0, 740, SIDE), fill=(90, 90, 95))
    for _ in range(40):
        x, y = int(rng.integers(20, SIDE - 60)), int(rng.choice([385, 405]))
        draw.rounded_rectangle((x, y - 7, x + 26, y + 7), 3, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw.rectangle((x + 6, y - 5, x + 18, y + 5), fill=(30, 30, 40))
    for _ in range(20):
        x = int(rng.integers(40, SIDE - 80))
        y = int(900 + 120 * np.sin(x / 230)) + int(rng.integers(-30, 30))
        draw.polygon([(x, y - 5), (x + 24, y - 5), (x + 30, y), (x + 24, y + 5), (x, y + 5)], fill=(235, 235, 230))
        draw.rectangle((x + 6, y - 3, x + 14, y + 3), fill=(180, 60, 40))
    image.save(path)
    return path


def _screenshot(page: str, out: str, *, centre: tuple, zoom: float, size=(1100, 640)) -> None:
    import json

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={size[0]},{size[1]}",
                     "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    ready = ("const v = window.tilescanViewer; return !!v && v.world.getItemCount() === 1 && "
             "v.world.getItemAt(0).getFullyLoaded();")
    try:
        driver.get("file://" + page)
        for step in range(2):
            for _ in range(200):
                if driver.execute_script(ready):
                    break
                time.sleep(0.1)
            if step == 0:
                driver.execute_script("const v = window.tilescanViewer; v.viewport.zoomTo(v.viewport."
                                      "imageToViewportZoom(arguments[2]), null, true); v.viewport.panTo(v.viewport."
                                      "imageToViewportCoordinates(arguments[0], arguments[1]), true);", *centre, zoom)
        time.sleep(1)
        with open(os.path.join(os.path.dirname(page), "detections.json")) as fh:
            best = max(json.load(fh)["annotations"], key=lambda a: a["score"])
        x, y, w, h = best["bbox"]
        at = driver.execute_script("const p = window.tilescanViewer.viewport.imageToViewerElementCoordinates("
                                   "new OpenSeadragon.Point(arguments[0], arguments[1])); return [p.x, p.y];",
                                   x + w / 2, y + h / 2)
        view = driver.find_element(By.ID, "view")
        ActionChains(driver).move_to_element_with_offset(view, int(at[0] - view.size["width"] / 2),
                                                         int(at[1] - view.size["height"] / 2)).perform()
        time.sleep(0.5)
        driver.save_screenshot(out)
    finally:
        driver.quit()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=project_path("docs", "images", "viewer.png"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        picture = toy_scene(os.path.join(work, "toy-scene.png"))
        run = os.path.join(work, "run")
        subprocess.run([sys.executable, project_path("app", "score.py"), "--image", picture, "--out", run,
                        "--stride", "8", "--quiet"], check=True, env=spark_env(), cwd=ROOT)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        _screenshot(os.path.join(run, "viewer.html"), args.out, centre=(620, 420), zoom=2.2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
