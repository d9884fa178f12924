"""Making the engine faster: ONNX Runtime graph optimisation levels and int8 quantisation.

    python -m benchmarks.quantize [--model models/default] [--image PNG] [--quick]

The float model at each graph optimisation level, and the int8 model in both formats
(static quantisation calibrated on CIFAR-10 *training* images and canvas tiles, see
:func:`training.quantize.add_int8_model`), timed in interleaved rounds at the job's
batch size. Each int8 model's accuracy is reported beside its speed: argmax agreement with
the float model on the picture's windows, balanced accuracy on the CIFAR-10 test set
(:func:`training.held_out.evaluate_bundle`), and AP on the demo collage (a scoring run on
Spark, evaluated against the collage's ground truth). The int8 bundles are copies under
the work folder: the model's own bundle is left as it is.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time

import numpy as np

from benchmarks.common import JOB_BATCH, best_of, measure_rate
from engines.onnx_engine import OPTIMIZATION_LEVELS, OnnxRuntimeEngine

__all__ = ["calibration_images", "int8_bundle", "run", "main"]

logger = logging.getLogger(__name__)


def calibration_images(count: int, *, seed: int = 7) -> np.ndarray:
    """Calibration images from the CIFAR-10 training set (see :mod:`training.calibration`)."""
    from tilesets import data_root, load_cifar
    from training.calibration import calibration_images as from_training

    return from_training(load_cifar(os.path.join(data_root(), "cifar10"), "train"), count, seed=seed)


def int8_bundle(model: str, folder: str, images: np.ndarray, quant_format: str) -> dict:
    """A copy of bundle ``model`` in ``folder`` with an int8 model added; how long that took."""
    from training.quantize import add_int8_model

    if os.path.isdir(folder):
        shutil.rmtree(folder)
    shutil.copytree(model, folder)
    started = time.time()
    bundle_id = add_int8_model(folder, images, quant_format=quant_format)
    return {"folder": folder, "sha256": bundle_id, "quantize_s": time.time() - started,
            "int8_bytes": os.path.getsize(os.path.join(folder, "model.int8.onnx")),
            "float_bytes": os.path.getsize(os.path.join(model, "model.onnx"))}


def _accuracy(bundle, engine: str, *, quick: bool, threads: int) -> dict | None:
    """Balanced accuracy on the CIFAR-10 test set (a 600-image subset when quick)."""
    from tilesets import data_root, load_cifar
    from training.held_out import evaluate_bundle, summarise

    root = os.path.join(data_root(), "cifar10")
    if not os.path.isdir(root):
        return None
    if not quick:
        result = evaluate_bundle(bundle, root, engine=engine, threads=threads)
        return {"test_images": result["test_images"]["balanced_accuracy"],
                "test_canvas_tiles": result["test_canvas_tiles"]["balanced_accuracy"]}
    from engines import create_engine

    test = load_cifar(root, "test").take(np.arange(600))
    model = create_engine(bundle, engine, threads=threads)
    pred = model.predict(np.ascontiguousarray(test.images.transpose(0, 3, 1, 2))).argmax(axis=1)
    return {"test_images": summarise(test.model_label, pred)["balanced_accuracy"], "test_canvas_tiles": None,
            "subset": len(test)}


def _collage_ap(spark, model: str, engine: str, image: str, truth: str, out: str) -> dict:
    from evaluation.runs import evaluate_run
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare
    from scoring.pipeline import run as run_pipeline

    params = ScoreParams(image=image, out=out, model=model, engine=engine, overwrite=True, quiet=True)
    manifest = run_pipeline(prepare(params), spark)
    evaluation = evaluate_run(out, truth)
    return {"boxes": manifest["counts"]["boxes"],
            "classes": {c: {"ap50": m["ap50"], "ap": m["ap"]} for c, m in evaluation["classes"].items()},
            "spark_job_windows_per_s": manifest["counts"]["windows_scored"] / manifest["timings_s"]["spark_job_s"]}


def run(model: str, image: str, work: str, *, threads_list, spark=None, truth: str | None = None,
        quick: bool = False) -> dict:
    """Speed of every level and int8 format, with the int8 models' accuracy beside it."""
    from benchmarks.engine import cut_batches
    from core.bundle import load_bundle
    from engines import create_engine
    from training.quantize import QUANT_FORMATS

    fp32 = load_bundle(model)
    started = time.time()
    count = 64 if quick else 500
    try:
        images = calibration_images(count)
        source = "CIFAR-10 training set: half images, half canvas tiles"
    except FileNotFoundError as exc:
        logger.warning("no CIFAR-10 (%s): calibrating on the picture's own windows", exc)
        images = np.ascontiguousarray(cut_batches(image, fp32.spec.size, count).transpose(0, 2, 3, 1))
        source = "windows of the scored picture (no CIFAR-10 found)"
    calibration = {"images": len(images), "source": source, "load_s": time.time() - started}
    variants = {f"int8 {fmt}": int8_bundle(model, os.path.join(work, "quantize", f"bundle-int8-{fmt}"), images, fmt)
                for fmt in QUANT_FORMATS}
    int8 = {name: load_bundle(v["folder"]) for name, v in variants.items()}

    windows = cut_batches(image, fp32.spec.size, 1024)
    engines = {}
    for threads in threads_list:
        for level in OPTIMIZATION_LEVELS:
            engines[f"fp32 {level}", threads] = OnnxRuntimeEngine(fp32, threads=threads, optimization=level)
        for name, bundle in int8.items():
            engines[name, threads] = create_engine(bundle, "onnxruntime-int8", threads=threads)
    blocks = {}
    for _ in range(1 if quick else 3):
        for key, engine in engines.items():
            data = windows[:JOB_BATCH]
            blocks.setdefault(key, []).append(
                measure_rate(lambda engine=engine, data=data: engine.predict(data), len(data),
                             min_seconds=0.2 if quick else 1.5))
    speed = [{"variant": name, "threads": threads, "batch": JOB_BATCH, **best_of(b)}
             for (name, threads), b in blocks.items()]
    reference = engines["fp32 all", threads_list[0]].predict(windows)

    accuracy_threads = max(threads_list)
    accuracy = {"fp32": {"engine": "onnxruntime", **(_accuracy(fp32, "onnxruntime", quick=quick,
                                                               threads=accuracy_threads) or {})}}
    for name, bundle in int8.items():
        probs = engines[name, threads_list[0]].predict(windows)
        accuracy[name] = {
            "engine": "onnxruntime-int8",
            "argmax_agreement": float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean()),
            "max_abs_prob_diff": float(np.abs(probs - reference).max()),
            **(_accuracy(bundle, "onnxruntime-int8", quick=quick, threads=accuracy_threads) or {}),
        }
    if spark is not None and truth:
        runs = {"fp32": (model, "onnxruntime"), **{n: (v["folder"], "onnxruntime-int8") for n, v in variants.items()}}
        for name, (folder, engine) in runs.items():
            logger.info("quantize: AP of %s on the collage", name)
            out = os.path.join(work, "quantize", "run-" + name.replace(" ", "-"))
            accuracy[name]["collage"] = _collage_ap(spark, folder, engine, image, truth, out)
    return {"model": fp32.spec.name, "calibration": calibration, "bundles": variants, "speed": speed,
            "accuracy": accuracy, "agreement_windows": len(windows)}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import base_parser, configure_logging, core_counts, inputs_from_args, local_spark

    p = base_parser(__doc__)
    p.add_argument("--master", default="local[2]", help="Spark master for the AP runs (default %(default)s)")
    args = p.parse_args(argv)
    configure_logging()
    inputs = inputs_from_args(args)
    spark = local_spark(args.master) if inputs.truth else None
    try:
        print(report.quantize_section(run(inputs.model, inputs.image, inputs.work, threads_list=core_counts(),
                                          spark=spark, truth=inputs.truth, quick=args.quick)))
    finally:
        if spark is not None:
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
