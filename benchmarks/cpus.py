"""The int8 and float32 engines on each kind of x86 CPU reachable here.

    python -m benchmarks.cpus [--model models/default] [--image PNG] [--quick]

This CPU, and the instruction sets of older ones: the same cores with CPUID masked, so that
ONNX Runtime runs the kernels of an AVX2-only CPU, of AVX-512 without VNNI, or of AVX-512
VNNI without AMX (localservices.cpus; skipped, with the reason, where CPUID faulting is not
offered). Each kind is measured in a process of its own: every engine's windows/s at one
thread and the job's batch (interleaved rounds, the best one), its golden-batch check as a
run does it when the engine loads, int8's agreement with float32 on the picture's windows,
and whether its outputs equal this CPU's bit for bit (a cluster may mix CPU kinds).

Beside the bundle's int8 model (7-bit weights), a copy quantised with full 8-bit weights
shows what the 7 bits avoid: on CPUs without VNNI its sums saturate, and its golden check
fails.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks.common import JOB_BATCH, best_of, measure_rate

__all__ = ["run", "measure_this_cpu", "main", "VARIANTS"]

logger = logging.getLogger(__name__)

#: What is timed on each CPU kind: (label, bundle, engine); "full" is the 8-bit-weights copy.
VARIANTS = (("float32", "bundle", "onnxruntime"), ("int8, 7-bit weights", "bundle", "onnxruntime-int8"),
            ("int8, 8-bit weights", "full", "onnxruntime-int8"))


def _digest(*arrays) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays if a is not None)).hexdigest()


def measure_this_cpu(bundles: dict, image: str, *, quick: bool) -> dict:
    """Every variant on this process's CPU: rate, golden check, agreement with float32, output digest."""
    from benchmarks.engine import cut_batches
    from core.bundle import load_bundle
    from core.cpu import this_cpu
    from engines import create_engine
    from engines.numerics import check_engine

    loaded = {name: load_bundle(folder) for name, folder in bundles.items()}
    engines, checks = {}, {}
    for label, bundle, name in VARIANTS:
        if bundle in loaded:
            engines[label] = create_engine(loaded[bundle], name, check=False)
            checks[label] = check_engine(engines[label], loaded[bundle].golden).to_json()
    windows = cut_batches(image, loaded["bundle"].spec.size, 256 if quick else 2048)
    outputs = {label: engine.detect(windows) for label, engine in engines.items()}
    blocks = {}
    for _ in range(1 if quick else 3):
        for label, engine in engines.items():
            batch = windows[:JOB_BATCH]
            blocks.setdefault(label, []).append(measure_rate(lambda e=engine, b=batch: e.predict(b), len(batch),
                                                             min_seconds=0.2 if quick else 1.5))
    reference = outputs["float32"][0]
    rows = {}
    for label, (probabilities, deltas) in outputs.items():
        gap = np.abs(probabilities - reference)
        rows[label] = {"per_s": best_of(blocks[label])["per_s"], "golden": checks[label],
                       "top_class_agreement": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                       "max_abs_prob_diff": float(gap.max()), "mean_abs_prob_diff": float(gap.mean()),
                       "digest": _digest(probabilities, deltas)}
    cpu = this_cpu()
    return {"cpu": cpu.model, "isa": list(cpu.isa), "windows": len(windows), "variants": rows}


def _full_range_copy(model: str, work: str, *, quick: bool) -> str | None:
    """A copy of the bundle whose int8 model has full 8-bit weights (None without CIFAR-10 to calibrate on),
    calibrated on CIFAR-10 training images as benchmarks.quantize's copies are."""
    from benchmarks.quantize import calibration_images
    from training.quantize import add_int8_model

    doc = json.load(open(os.path.join(model, "model.json")))
    folder = os.path.join(work, "cpus", "bundle-int8-8bit")
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    shutil.copytree(model, folder)
    try:
        images = calibration_images(64 if quick else doc.get("int8", {}).get("calibration_images", 512))
    except FileNotFoundError as exc:
        logger.warning("cpus: no CIFAR-10 to calibrate the 8-bit copy on (%s)", exc)
        return None
    add_int8_model(folder, images, reduce_range=False)
    return folder


def run(model: str, image: str, work: str, *, quick: bool = False) -> dict:
    """Each CPU kind in a process of its own (this one, then the profiles localservices.cpus can stand in)."""
    from localservices.cpus import PROFILES, environment, unavailable

    bundles = {"bundle": os.path.abspath(model)}
    full = _full_range_copy(model, work, quick=quick)
    if full:
        bundles["full"] = full
    missing = unavailable()
    kinds = [None] + ([] if missing else list(PROFILES))
    results = []
    for profile in kinds:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, "-m", "benchmarks.cpus", "--this-cpu", out.name, "--bundles",
                       json.dumps(bundles), "--image", image] + (["--quick"] if quick else [])
            env = environment(profile) if profile else dict(os.environ)
            logger.info("cpus: %s", profile or "this CPU")
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            results.append({"profile": profile or "native", "stands_for": PROFILES.get(profile, "this CPU"),
                            **json.load(open(out.name))})
    native = results[0]["variants"]
    for result in results:
        for label, row in result["variants"].items():
            row["same_as_this_cpu"] = row["digest"] == native[label]["digest"]
    return {"kinds": results, "masked_kinds_missing": missing, "full_range_copy": bool(full)}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import base_parser, configure_logging, inputs_from_args

    p = base_parser(__doc__)
    p.add_argument("--this-cpu", metavar="JSON", help=argparse.SUPPRESS)  # the child process of each CPU kind
    p.add_argument("--bundles", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.this_cpu:  # the child: measure here and write the figures
        with open(args.this_cpu, "w") as fh:
            json.dump(measure_this_cpu(json.loads(args.bundles), args.image, quick=args.quick), fh)
        return 0
    configure_logging()
    inputs = inputs_from_args(args)
    print(report.cpus_section(run(inputs.model, inputs.image, inputs.work, quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
