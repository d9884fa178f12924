"""The georeferenced acceptance run: a 20,000 x 20,000 tiled GeoTIFF in UTM 33N (half a metre
per pixel) with CIFAR-10 test cars and boats at known map positions, on the stride's grid.

    python -m benchmarks.geotiff [--model models/default] [--quick]

``python app/score.py --heatmap --master local[2]`` at the model's default window and
stride, in a fresh process, its memory sampled as in :mod:`benchmarks.memory` (same targets);
then the run is read back against the scene (:func:`evaluation.scene.scene_report`): where the
windows, the heat map and the boxes put each object on the map, the heat map against
``windows.parquet``, and what the viewer's pyramid holds. ``--quick``: 4,096 px, 12 objects.
Needs the CIFAR-10 test set (``TILESCAN_DATA``).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from benchmarks.common import folder_size, spark_env
from benchmarks.memory import TARGETS_MB
from benchmarks.procmem import TreeSampler
from core.project import ROOT, project_path

__all__ = ["run", "main", "SIDE", "OBJECTS"]

logger = logging.getLogger(__name__)

SIDE, OBJECTS = 20_000, 60
QUICK_SIDE, QUICK_OBJECTS = 4_096, 12
ORIGIN, PIXEL_SIZE, EPSG = (500_000.0, 4_650_000.0), 0.5, 32633
_SEED = 3


def _scene(folder: str, side: int, count: int, stride: int):
    from collage.scene import place_objects, write_scene_geotiff
    from tilesets import data_root, load_cifar

    library = load_cifar(os.path.join(data_root(), "cifar10"), "test")
    objects = place_objects(library, ("car", "boat"), count, side, grid=stride, seed=_SEED)
    started = time.time()
    scene = write_scene_geotiff(os.path.join(folder, f"scene-{side}.tif"), side, objects, library, origin=ORIGIN,
                                pixel_size=PIXEL_SIZE, epsg=EPSG, seed=_SEED)
    return scene, time.time() - started


def run(model: str, work: str, *, quick: bool = False) -> dict:
    from core.bundle import load_bundle
    from evaluation.scene import scene_report
    from scoring.params import ScoreParams

    side, count = (QUICK_SIDE, QUICK_OBJECTS) if quick else (SIDE, OBJECTS)
    # The model's window and the default stride for it.
    bundle = load_bundle(model)
    defaults = ScoreParams(out="-", image="-", model=model).for_model(bundle.spec, bundle.recommended)
    window, stride = defaults.window, defaults.stride
    folder = os.path.join(work, "geotiff")
    os.makedirs(folder, exist_ok=True)
    scene, write_s = _scene(folder, side, count, stride)
    out, log = os.path.join(folder, f"run-{side}"), os.path.join(folder, f"run-{side}.log")
    command = [sys.executable, project_path("app", "score.py"), "--image", os.path.join(folder, f"scene-{side}.tif"),
               "--out", out, "--model", model, "--master", "local[2]", "--heatmap",
               "--max-pixels", str(side * side), "--overwrite", "--quiet"]
    logger.info("geotiff: %dx%d UTM GeoTIFF with %d objects", side, side, count)
    started = time.time()
    with open(log, "w") as fh:
        process = subprocess.Popen(command, env=spark_env(), stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        peaks = TreeSampler.watch(process)
    command_s = time.time() - started
    if process.returncode:
        with open(log) as fh:
            raise RuntimeError(f"score.py exited {process.returncode}; {log}:\n{fh.read()[-2000:]}")
    with open(os.path.join(out, "manifest.json")) as fh:
        manifest = json.load(fh)
    report = scene_report(out, scene, stride=stride, window=window)
    viewer_files, viewer_bytes = folder_size(os.path.join(out, manifest["viewer"]["folder"]))
    return {"side": side, "objects": count, "stride": stride, "window": window, "pixel_size_m": PIXEL_SIZE,
            "epsg": EPSG, "scene_write_s": write_s, "command_s": command_s,
            "windows": manifest["counts"]["windows_scored"], "windows_kept_rows": manifest["counts"]["windows_kept"],
            "timings_s": manifest["timings_s"],
            "peaks_mb": peaks, "targets_mb": TARGETS_MB,
            "within_targets": {k: peaks[k] < v for k, v in TARGETS_MB.items()},
            "viewer": {"files": viewer_files, "bytes": viewer_bytes},
            "heatmap_bytes": os.path.getsize(os.path.join(out, "heatmap.tif")),
            **{k: v for k, v in report.items() if k != "per_object"}, "per_object": report["per_object"]}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda _, inputs, args: report.geotiff_section(
        run(inputs.model, inputs.work, quick=args.quick)), argv, spark=False)


if __name__ == "__main__":
    sys.exit(main())
