"""Dense-exact scoring against window by window, on the same machine in one run.

    python -m benchmarks.dense_scoring [--quick]

1. **Paths.** One 1-thread engine in this process scores the same picture as an executor
   scores its bands (:func:`scoring.windows.score_strip` window by window, or
   :func:`scoring.windows.score_strip_dense` in dense passes): the ResNet detector, the default
   before the padding-free one (``models/resnet``), at stride 16 window by window; the
   padding-free default (``models/default``) at stride 16 and 8, window by window and dense. Each on its model's
   recommended engine and on fp32 ONNX Runtime; the best of a few rounds. Windows/s, picture
   pixels/s, and the FLOPs each path computes (:func:`benchmarks.engine.count_flops`: per
   window, or per dense pass over its pixels) with the rate they run at.
2. **The demo, side by side.** ``app/score.py`` on the demo's two collages (made as ``make
   demo`` makes them) in local mode, the ResNet at stride 16 and the default at its
   defaults, alternately, twice each: Spark-job seconds from the manifests, the best of
   each, and AP50 and AP50:95 per class on each collage (:func:`evaluation.runs.evaluate_run`).

Needs the CIFAR-10 test set and the Mona Lisa for the demo (``TILESCAN_DATA``).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import spark_env
from core.project import project_path

__all__ = ["run", "main", "RESNET_MODEL"]

logger = logging.getLogger(__name__)

#: The padded detector the dense default is measured against.
RESNET_MODEL = project_path("models", "resnet")
SIDE, QUICK_SIDE = 768, 384
STRIPS = 6  # bands per picture, as a run's planner cuts a picture of this size for two cores


def _flops(onnx_bytes: bytes, shape, cache: dict) -> int:
    from benchmarks.engine import count_flops

    if shape not in cache:
        cache[shape] = count_flops(onnx_bytes, band=shape)["flops"]
    return cache[shape]


def _path_rows(picture: np.ndarray, model: str, strides, *, rounds: int) -> list[dict]:
    """Every path of one model over ``picture``: seconds, windows/s, pixels/s, FLOPs and their rate."""
    from core.bundle import load_bundle
    from engines import create_engine
    from scoring.params import resolve_settings
    from scoring.paths import DENSE_PASS_PIXELS
    from scoring.windows import dense_passes
    from tiling import WindowGrid
    from tiling.strips import plan_strips

    bundle = load_bundle(model)
    spec = bundle.spec
    recommended = resolve_settings(spec, bundle.recommended, bundle.files).engine
    onnx_bytes = bundle.file("onnx")
    cache = {}
    rows = []
    height, width = picture.shape[:2]
    for engine_name in dict.fromkeys([recommended, "onnxruntime"]):
        engine = create_engine(bundle, engine_name, threads=1)
        for stride in strides:
            grid = WindowGrid(height, width, spec.size, stride)
            strips = plan_strips(grid, STRIPS)
            paths = ["per-window"] + (["dense"] if spec.dense_stride and stride % spec.dense_stride == 0 else [])
            for path in paths:
                score = functools.partial(_score_picture, picture, strips, grid, spec, engine, stride, path)
                score()  # warm: the engine's first shapes
                best = min(_timed(score) for _ in range(rounds))
                if path == "dense":
                    flops = 0
                    for strip in strips:
                        ys = np.asarray(strip.window_ys)
                        on_rows, on_columns = int((ys % stride == 0).sum()), int((grid.xs % stride == 0).sum())
                        for r0, r1, c0, c1 in dense_passes(on_rows, on_columns, spec.size, stride, DENSE_PASS_PIXELS):
                            flops += _flops(onnx_bytes, (spec.size + (r1 - r0 - 1) * stride,
                                                         spec.size + (c1 - c0 - 1) * stride), cache)
                        off = len(ys) * len(grid.xs) - on_rows * on_columns  # one by one
                        flops += off * _flops(onnx_bytes, (spec.size, spec.size), cache)
                else:
                    flops = grid.n_windows * _flops(onnx_bytes, (spec.size, spec.size), cache)
                rows.append({"model": spec.name, "engine": engine_name, "stride": stride, "path": path,
                             "windows": grid.n_windows, "seconds": best, "windows_per_s": grid.n_windows / best,
                             "pixels_per_s": height * width / best, "gflop": flops / 1e9,
                             "mflop_per_window": flops / grid.n_windows / 1e6, "gflops_per_s": flops / best / 1e9})
                logger.info("paths: %s %s stride %d %s: %.2f s, %.0f windows/s, %.1f MFLOP/window", spec.name,
                            engine_name, stride, path, best, grid.n_windows / best, flops / grid.n_windows / 1e6)
    return rows


def _score_picture(picture, strips, grid, spec, engine, stride: int, path: str) -> None:
    """Every band of ``picture`` as an executor scores it, on ``path``."""
    from scoring.paths import DENSE_PASS_PIXELS
    from scoring.windows import score_strip, score_strip_dense

    for strip in strips:
        pixels = picture[strip.y0:strip.y1]
        if path == "dense":
            score_strip_dense(pixels, strip, grid.xs, spec.size, engine.detect_band, engine.detect, stride=stride,
                              dense_stride=spec.dense_stride, pass_pixels=DENSE_PASS_PIXELS, batch_size=128)
        else:
            score_strip(pixels, strip, grid.xs, spec.size, engine.detect, batch_size=128)


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _demo_pictures(work: str) -> tuple[str, dict]:
    """The demo's collages (as ``make demo`` makes them) in ``work``: their folder and ground truths."""
    from collage.make import TEST_COLLAGES, default_target, make_collage

    pictures = os.path.join(work, "pictures")
    os.makedirs(pictures, exist_ok=True)
    truths = {}
    for name, params in TEST_COLLAGES.items():
        folder = os.path.join(work, "collages", name)
        if not os.path.exists(os.path.join(folder, "ground_truth.json")):
            make_collage(folder, params, target=default_target())
        link = os.path.join(pictures, f"{name}.png")
        if not os.path.lexists(link):
            os.link(os.path.join(folder, "collage.png"), link)
        truths[name] = os.path.join(folder, "ground_truth.json")
    return pictures, truths


def _demo_run(pictures: str, out: str, options: list) -> dict:
    from scoring.job import spark_submit_executable

    command = [spark_submit_executable(), "--master", "local[*]", project_path("app", "score.py"), "--image",
               pictures, "--out", out, "--keep", "0", "--overwrite", "--quiet", *options]
    started = time.time()
    done = subprocess.run(command, env=spark_env(), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"score.py exited {done.returncode}: {done.stderr[-2000:]}")
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    return {"spark_job_s": manifest["timings_s"]["spark_job_s"], "command_s": time.time() - started,
            "windows": manifest["counts"]["windows_scored"], "manifest": manifest}


def _demo_rows(work: str, rounds: int) -> list[dict]:
    from evaluation.runs import evaluate_run

    pictures, truths = _demo_pictures(work)
    setups = [("resnet", ["--model", RESNET_MODEL, "--stride", "16"]),
              ("default", ["--model", project_path("models", "default")])]
    results = {name: [] for name, _ in setups}
    for _ in range(rounds):
        for name, options in setups:
            results[name].append(_demo_run(pictures, os.path.join(work, f"run-{name}"), options))
    rows = []
    for name, _ in setups:
        best = min(results[name], key=lambda r: r["spark_job_s"])
        manifest = best["manifest"]
        accuracy = {}
        for picture, truth in truths.items():
            run_dir = os.path.join(work, f"run-{name}", picture)
            evaluated = evaluate_run(run_dir, truth, out=os.path.join(work, f"evaluation-{name}", picture))
            accuracy[picture] = {c: {"ap50": m["ap50"], "ap": m["ap"]} for c, m in evaluated["classes"].items()}
        rows.append({"setup": name, "model": manifest["model"]["name"], "stride": manifest["parameters"]["stride"],
                     "engine": manifest["parameters"]["engine"], "path": manifest["scoring"]["path"],
                     "windows": best["windows"], "spark_job_s": [r["spark_job_s"] for r in results[name]],
                     "best_spark_job_s": best["spark_job_s"], "accuracy": accuracy})
    return rows


def run(work: str, *, quick: bool = False) -> dict:
    """Both parts; see the module's notes."""
    from benchmarks.machine import describe

    side = QUICK_SIDE if quick else SIDE
    picture = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    rounds = 2 if quick else 3
    paths = _path_rows(picture, RESNET_MODEL, (16,), rounds=rounds)
    paths += _path_rows(picture, project_path("models", "default"), (16, 8), rounds=rounds)
    folder = os.path.join(work, "dense-scoring")
    demo = [] if quick else _demo_rows(folder, 2)
    ratio = None
    if demo:
        ratio = demo[1]["best_spark_job_s"] / demo[0]["best_spark_job_s"]
    return {"side": side, "strips": STRIPS, "rounds": rounds, "paths": paths, "demo": demo,
            "demo_ratio": ratio, "machine": describe()}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda _, inputs, args: report.dense_scoring_section(
        run(inputs.work, quick=args.quick)), argv, spark=False)


if __name__ == "__main__":
    sys.exit(main())
