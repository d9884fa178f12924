"""The demo: two collages of CIFAR-10 test images over the Mona Lisa, scored on Spark in one run and evaluated.

    make demo            # or: python -m app.demo [--work work/demo] [-- SCORE OPTIONS]

1. data from $TILESCAN_DATA (default ../shared/data); CIFAR-10 is downloaded from its
   official home and checked against its MD5 where no copy exists;
2. the test collages of collage.make.TEST_COLLAGES with their ground truth: the Mona Lisa
   matched by colour (step 24, jitter 4) and random picks (step 20, jitter 6);
3. one `spark-submit app/score.py --image FOLDER` in local mode with the default model
   at its defaults (every window kept, for heat maps);
4. evaluation of each (AP per class, window confusion matrix, PR curves), and the same
   windows re-merged with --merge none, nms and fuse for comparison;
5. a short summary.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time

from app import cli
from collage.make import TEST_COLLAGES, make_collage
from core.errors import InputError
from core.project import project_path
from evaluation.metrics import box_metrics, format_number, summary_lines
from evaluation.runs import evaluate_run, evaluation_folder
from scoring.boxes import boxes_from_table, coco_detections
from scoring.job import spark_submit_executable
from scoring.merge import MERGE_METHODS
from scoring.stored_windows import windows_path
from tilesets import data_root
from tilesets.download import fetch_cifar10

logger = logging.getLogger(__name__)


def ensure_data(work: str) -> str:
    """The data folder, fetching CIFAR-10 when it is not there."""
    root = data_root()
    if os.path.isdir(os.path.join(root, "cifar10")):
        return root
    root = os.path.join(work, "data")
    logger.info("no CIFAR-10 under $TILESCAN_DATA: downloading it into %s", root)
    fetch_cifar10(root)
    return root


def target_picture(root: str, work: str) -> str:
    path = os.path.join(root, "mona_lisa.jpg")
    if os.path.exists(path):
        return path
    # Without the Mona Lisa, any picture will do: a smooth synthetic landscape.
    import numpy as np
    from PIL import Image

    logger.info("no mona_lisa.jpg under %s: using a synthetic target picture", root)
    y, x = np.mgrid[0:1192, 0:800] / np.array([1192.0, 800.0])[:, None, None]
    rgb = np.stack([60 + 150 * x, 80 + 120 * (1 - y), 40 + 100 * np.sin(6 * x * y) ** 2], axis=2)
    path = os.path.join(work, "target.png")
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def score_command(image: str, out: str, extra: list) -> list:
    """score.py's arguments for the demo's run, checked as score.py would check them.

    The demo sets the pictures and the output itself (it evaluates what it wrote there), so
    extra options may not move them; bad options fail here, before the collages are built.
    """
    from app.score import build_parser, params_from_args

    arguments = ["--image", image, "--out", out, "--keep", "0", "--overwrite", *extra]
    args = build_parser().parse_args(arguments)
    if args.image != image or args.images is not None or args.out != out:
        raise InputError("the demo sets score.py's --image and --out itself: leave them out of its options")
    params_from_args(args)
    return arguments


def score(arguments: list) -> float:
    # Spark's Pythons are this one unless the caller named others (as score.py takes them).
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_CONF_DIR=project_path("conf"),
               PYSPARK_PYTHON=os.environ.get("PYSPARK_PYTHON") or sys.executable,
               PYSPARK_DRIVER_PYTHON=os.environ.get("PYSPARK_DRIVER_PYTHON") or sys.executable,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    # No --driver-memory: the driver holds headers, not pixels (Spark's default 1g will do).
    command = [spark_submit_executable(), "--master", "local[*]", project_path("app", "score.py"), *arguments]
    logger.info("running: %s", " ".join(command))
    started = time.time()
    exit_code = subprocess.run(command, env=env).returncode
    if exit_code:
        raise DemoFailed(exit_code)
    return time.time() - started


class DemoFailed(Exception):
    """score.py failed; it has said why on stderr."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"scoring failed: spark-submit exited with code {exit_code} (its reason is above)")
        self.exit_code = exit_code


def compare_merges(run: str, truth: dict, iou: float) -> dict:
    """AP of the run's windows merged each way, with the run's thresholds."""
    import pyarrow.parquet as pq

    manifest = json.load(open(os.path.join(run, "manifest.json")))
    classes = manifest["model"]["classes"]
    table = pq.read_table(windows_path(run, manifest))  # the picture's part of the run's windows dataset
    thresholds = manifest["parameters"]["thresholds"]
    results = {}
    for method in MERGE_METHODS:
        _, boxes = boxes_from_table(table, classes, thresholds, merge=method, iou=iou)
        detections = coco_detections(boxes, classes, manifest["model"]["background"], file_name="collage.png",
                                     width=manifest["input"]["width"], height=manifest["input"]["height"])
        metrics = box_metrics(truth, detections)
        results[method] = {"boxes": len(boxes), **{c: {"ap50": m["ap50"], "ap": m["ap"]}
                                                  for c, m in metrics["classes"].items()}}
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--work", default=project_path("work", "demo"), help="working folder (default %(default)s)")
    p.add_argument("score_args", nargs="*", help="extra score.py options after --, e.g. -- --merge nms")
    args = p.parse_args(argv)
    cli.configure_logging()
    try:
        return cli.run_command(lambda: _demo(args.work, args.score_args))
    except DemoFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _demo(work: str, score_args: list) -> int:
    if os.path.exists(work) and not os.path.isdir(work):
        raise InputError(f"--work {work} is a file, not a folder")
    pictures = os.path.join(work, "pictures")
    run_dir = os.path.join(work, "run")
    arguments = score_command(pictures, run_dir, score_args)
    os.makedirs(work, exist_ok=True)
    root = ensure_data(work)
    os.environ["TILESCAN_DATA"] = root
    target = target_picture(root, work)
    os.makedirs(pictures, exist_ok=True)
    built = {}
    for name, params in TEST_COLLAGES.items():
        started = time.time()
        folder = os.path.join(work, "collages", name)
        built[name] = (make_collage(folder, params, target=target), time.time() - started)
        link = os.path.join(pictures, f"{name}.png")  # the run's folder of pictures, without copies
        if os.path.lexists(link):
            os.remove(link)
        os.link(os.path.join(folder, "collage.png"), link)
    score_s = score(arguments)
    manifest = json.load(open(os.path.join(run_dir, "manifest.json")))
    counts, timings = manifest["counts"], manifest["timings_s"]

    print()
    for name, (summary, seconds) in built.items():
        size = summary["parameters"]
        print(f"collage     {name}: {size['width']}x{size['height']} px, {summary['counts']['placements']:,} tiles "
              f"({', '.join(f'{c} {n:,}' for c, n in summary['counts']['placements_per_class'].items())}), "
              f"built in {seconds:.1f}s")
    print(f"scoring     {counts['windows_scored']:,} windows of {counts['scored']} pictures in {timings['tasks']} "
          f"tasks, engine {manifest['parameters']['engine']}: Spark job {timings['spark_job_s']:.1f}s "
          f"({counts['windows_scored'] / timings['spark_job_s']:,.0f} windows/s), first to last task "
          f"{timings['first_to_last_task_s']:.1f}s ({counts['windows_scored'] / timings['first_to_last_task_s']:,.0f} "
          f"windows/s); spark-submit total {score_s:.1f}s")
    parameters = manifest["parameters"]
    print(f"settings    thresholds {parameters['thresholds']}, merge {parameters['merge']} at IoU "
          f"{parameters['merge_iou']} ({', '.join(sorted(set(parameters['settings_source'].values())))})")
    for name in built:
        picture_run = os.path.join(run_dir, name)
        truth_path = os.path.join(work, "collages", name, "ground_truth.json")
        evaluated = evaluation_folder(picture_run)  # beside the committed run, never in it
        evaluation = evaluate_run(picture_run, truth_path, out=evaluated)
        picture = json.load(open(os.path.join(picture_run, "manifest.json")))
        merges = compare_merges(picture_run, json.load(open(truth_path)), parameters["merge_iou"])
        with open(os.path.join(evaluated, "merge_comparison.json"), "w") as fh:
            json.dump(merges, fh, indent=2)
        print(f"\n{name}: {', '.join(f'{c} {n:,}' for c, n in picture['counts']['boxes_per_class'].items())} boxes")
        for line in summary_lines(evaluation):
            print(f"  evaluation  {line}")
        for method, r in merges.items():
            print(f"  merge {method:<5} {r['boxes']:>6,} boxes  " + "  ".join(
                f"{c} AP50 {format_number(v['ap50'])}" for c, v in r.items() if c != "boxes"))
        print(f"  outputs     {picture_run}: overlay.png, detections.json")
        print(f"  evaluation  {evaluated}: evaluation.json, pr_curve.png, merge_comparison.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
