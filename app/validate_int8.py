"""Validate a bundle's int8 model on this CPU, and record where it holds.

    python -m app.validate_int8 [--model models/default] [--write] [--json FILE]

ONNX Runtime's int8 kernels depend on the CPU's instruction sets (AVX2, AVX-512, VNNI,
AMX), so an int8 model is validated per CPU. This scores the bundle's validation collages
(built from the CIFAR-10 training set's validation channel, as app.train_detector chose
the bundle's settings on them; the test set is never used) with the float and the int8
engine at the bundle's recommended settings, runs each engine's golden-batch check, and
times both at one thread. The int8 model holds on this CPU when its AP50 per class stays
within 0.01 of the float model's; the exit code is 1 where it does not.

With --write, the figures are recorded in model.json (`int8.validation.cpus`, one entry
per CPU model and instruction sets, replacing an earlier one), and the bundle recommends
the int8 engine only while it holds on every CPU recorded. Run it on each kind of CPU a
cluster has; `make validate-int8` runs it here and under the instruction sets of older
x86 CPUs (localservices/cpus.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from app import cli
from core.bundle import load_bundle, update_model_json
from core.errors import TilescanError
from engines import create_engine
from engines.numerics import check_engine
from evaluation.int8_validation import validate_on_this_cpu
from evaluation.tuning import TUNED_SETTINGS
from tilesets import data_root, load_cifar
from training.detector import DetectorConfig
from training.model_card import write_model_card

__all__ = ["INT8_TOLERANCE", "INT8_ENGINE", "validate", "record_validation", "main"]

#: AP50 an int8 model may lose per class, on the validation collages, and still be recommended.
INT8_TOLERANCE = 0.01
INT8_ENGINE = "onnxruntime-int8"
_FLOAT_ENGINE = "onnxruntime"


def _checked(bundle, name: str, threads: int):
    """The engine with its numerics check recorded, not raised: a failed check is a finding here."""
    engine = create_engine(bundle, name, threads=threads, check=False)
    engine.numerics = check_engine(engine, bundle.golden)
    return engine


def validate(folder: str, pictures, *, rounds: int = 5) -> dict:
    """:func:`evaluation.int8_validation.validate_on_this_cpu` for the bundle in ``folder``."""
    bundle = load_bundle(folder)
    settings = {k: bundle.recommended.get(k) for k in TUNED_SETTINGS}
    if None in settings.values():
        raise TilescanError(f"{folder}: the bundle recommends no thresholds and merging to validate int8 at "
                            "(app.train_detector chooses them)")
    if "stride" in bundle.recommended:  # a run's at its defaults
        settings["stride"] = bundle.recommended["stride"]
    threads = os.cpu_count() or 1
    names = {"float32": _FLOAT_ENGINE, "int8": INT8_ENGINE}
    scoring = {precision: _checked(bundle, name, threads) for precision, name in names.items()}
    timing = {precision: create_engine(bundle, name, threads=1, check=False) for precision, name in names.items()}
    return validate_on_this_cpu(scoring, timing, pictures, bundle.spec, settings, tolerance=INT8_TOLERANCE,
                                rounds=rounds)


def record_validation(folder: str, entry: dict, pictures) -> dict:
    """Add this CPU's ``entry`` to the bundle's ``int8.validation`` (replacing the same CPU's),
    recommend the int8 engine only if it holds on every CPU recorded, and write the model card
    again where the bundle has its held-out results; returns the validation record."""
    with open(os.path.join(folder, "model.json")) as fh:
        doc = json.load(fh)
    int8 = doc.get("int8")
    if not isinstance(int8, dict):
        raise TilescanError(f"{folder}: model.json has no int8 record (add one with python -m app.quantize)")
    validation = int8.get("validation") or {}
    names = [p.name for p in pictures]
    model = doc["files"][int8["file"]]["sha256"]
    if validation.get("pictures") != names or validation.get("int8_sha256") != model:
        # Another int8 model, or other pictures: what other CPUs showed no longer applies.
        validation = {"pictures": names, "tolerance": INT8_TOLERANCE, "int8_sha256": model, "cpus": []}
    same = (entry["cpu"]["model"], entry["cpu"]["isa"])
    validation["cpus"] = [c for c in validation["cpus"] if (c["cpu"]["model"], c["cpu"]["isa"]) != same] + [entry]
    validation["validated"] = all(c["holds"] for c in validation["cpus"])
    recommended = dict(doc.get("recommended") or {})
    if validation["validated"]:
        recommended["engine"] = INT8_ENGINE
    else:
        recommended.pop("engine", None)
    update_model_json(folder, int8={**int8, "validation": validation}, recommended=recommended)
    evaluation = os.path.join(folder, "evaluation.json")
    if os.path.exists(evaluation):  # the card lists the CPUs: it would go stale
        with open(evaluation) as fh:
            write_model_card(folder, json.load(fh))
    return validation


def _print(entry: dict) -> None:
    cpu = entry["cpu"]
    print(f"cpu       {cpu['model']}; {', '.join(cpu['isa']) or 'no AVX2'}")
    for precision in ("float32", "int8"):
        ap = ", ".join(f"{c} {v:.4f}" for c, v in entry["ap50"][precision].items())
        golden = entry["golden"][precision] or {}
        difference = golden.get("difference") or {}
        print(f"{precision:9s} AP50 {ap}; {entry['windows_per_s'][precision]:,} windows/s at 1 thread; golden "
              f"check {golden.get('status', 'not run')}"
              + (f" (probabilities within {difference['probability_max']:.2g}, mean "
                 f"{difference['probability_mean']:.2g})" if difference else ""))
    print(f"int8      {entry['int8_speedup']}x float32 on {entry['speed_path']}; "
          + ("holds" if entry["holds"] else "DOES NOT HOLD") + f" (AP50 within {INT8_TOLERANCE} per class)")


def _validate(args: argparse.Namespace) -> int:
    from app.train_detector import validation_pictures

    with open(os.path.join(args.model, "model.json")) as fh:
        training = json.load(fh).get("training", {}).get("config")
    if not training:
        raise TilescanError(f"{args.model}: the bundle records no training config to build its validation "
                            "collages from (app.train_detector writes one)")
    data = args.data or os.path.join(data_root(), "cifar10")
    if not os.path.isdir(data):
        raise TilescanError(f"CIFAR-10 not found at {data} (set TILESCAN_DATA or --data)")
    config = DetectorConfig(data=data, out=args.model, val_fraction=training["val_fraction"], seed=training["seed"])
    pictures = validation_pictures(config, load_cifar(data, "train"))
    entry = validate(args.model, pictures, rounds=args.rounds)
    _print(entry)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(entry, fh, indent=1)
    if args.write:
        validation = record_validation(args.model, entry, pictures)
        kinds = len(validation["cpus"])
        print(f"recorded in {os.path.join(args.model, 'model.json')} (and its card): validated on {kinds} CPU kinds, "
              + ("holds on all: the int8 engine is recommended" if validation["validated"]
                 else "not on all: float32 stays the default"))
    return 0 if entry["holds"] else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.validate_int8", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--model", default="models/default", help="bundle folder (default %(default)s)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder (default $TILESCAN_DATA/cifar10)")
    p.add_argument("--write", action="store_true", help="record the figures in the bundle's model.json")
    p.add_argument("--json", help="also write this CPU's figures to this file")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (default %(default)s)")
    args = p.parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _validate(args))


if __name__ == "__main__":
    sys.exit(main())
