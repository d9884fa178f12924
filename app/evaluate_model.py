"""Recompute a model bundle's held-out results: the CIFAR-10 test set and the test collages.

    python -m app.evaluate_model --model models/default [--write]

First every engine the bundle has files for runs its golden-batch check on this CPU (as a
run does when it loads the engine): a failure is one error line and exit 2. Then two views
of the CIFAR-10 test set (never used in training) and, for the collages of
collage.make.TEST_COLLAGES (built from the test set), AP50, AP50:95, precision and recall
per class, scored in this process as a run at the defaults scores them (the bundle's
recommended engine, thresholds and merging). Without --write, compares the figures with
the bundle's recorded evaluation.json and exits 1 when they differ; with --write, records
them (evaluation.json and the model card).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from app import cli
from collage.make import CIFAR_LIBRARY, TEST_COLLAGES, default_target, load_library
from core.bundle import load_bundle
from core.errors import TilescanError
from engines import ENGINES, create_engine, engine_class
from evaluation.tuning import TUNED_SETTINGS, collage_picture, picture_metrics, score_picture
from pixels import read_image
from scoring.params import default_stride, resolve_settings
from tilesets import FOREGROUND_CLASSES, data_root
from training.held_out import evaluate_bundle
from training.model_card import write_model_card

RECORD = "evaluation.json"
VIEWS = ("test_images", "test_canvas_tiles", "test_collages")
_REPORTED = ("ap50", "ap", "precision", "recall", "true_positives", "false_positives", "truths", "ignored_truths",
             "detections")


def settings_at(recommended: dict, stride: int) -> dict:
    """``recommended`` with ``stride``, and the thresholds and merging chosen for that stride on the
    validation collages where the model recorded them (a dense model records each stride it measured)."""
    chosen = recommended.get("validation", {}).get("strides", {}).get(str(stride), {})
    return {**recommended, **{k: chosen[k] for k in TUNED_SETTINGS if k in chosen},
            "stride": stride}


def collage_results(bundle, *, threads: int, stride: int | None = None) -> dict:
    """AP50, AP50:95, precision and recall per class on each test collage, at the bundle's defaults
    (or at ``stride`` with the settings chosen for it: :func:`settings_at`)."""
    recommended = settings_at(bundle.recommended, stride) if stride else bundle.recommended
    settings = resolve_settings(bundle.spec, recommended, bundle.files)
    stride = default_stride(bundle.spec, recommended)
    engine = create_engine(bundle.subset(engine_class(settings.engine).required_files), settings.engine,
                           threads=threads)
    target, _ = read_image(default_target())
    tiles = load_library(CIFAR_LIBRARY)
    collages = {}
    for name, params in TEST_COLLAGES.items():
        picture = collage_picture(name, tiles.images, tiles.model_class, params, target, FOREGROUND_CLASSES)
        metrics = picture_metrics(score_picture(picture.pixels, engine, stride=stride), picture, bundle.spec,
                                  thresholds=settings.thresholds, merge=settings.merge, iou=settings.merge_iou)
        collages[name] = {
            "size": [int(picture.pixels.shape[1]), int(picture.pixels.shape[0])],
            "parameters": {k: getattr(params, k) for k in ("width", "step", "jitter", "match", "seed")},
            "classes": {c: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k in _REPORTED}
                        for c, m in metrics["classes"].items()},
        }
    # A model that recommends its stride says so; the others' records stay as they were (stride 16).
    return {"settings": {**settings.to_json(), **({"stride": stride} if "stride" in recommended else {})},
            "collages": collages}


def numerics_checks(bundle) -> list[str]:
    """The golden-batch check of every engine the bundle has files for and this environment has
    (:mod:`engines.numerics`), one line each.

    Raises
    ------
    NumericsError
        For the first engine whose numbers stray here.
    """
    lines = []
    for name in ENGINES:
        try:
            needed = engine_class(name).required_files
        except TilescanError:  # its framework is not installed here
            continue
        if set(needed) <= set(bundle.files):
            lines.append(create_engine(bundle.subset(needed), name).numerics.summary())
    return lines


def _evaluate(args: argparse.Namespace) -> int:
    cifar = args.data or os.path.join(data_root(), "cifar10")
    if not os.path.isdir(cifar):
        raise TilescanError(f"CIFAR-10 not found at {cifar} (set TILESCAN_DATA or --data)")
    if args.stride is not None and (args.stride < 1 or args.write):
        raise TilescanError("--stride must be >= 1" if args.stride < 1 else
                            "--stride scores at other settings than the defaults the record holds: leave out --write")
    bundle = load_bundle(args.model)
    for line in numerics_checks(bundle):
        print(f"numerics: {line}")
    if args.stride:
        _print_collages(collage_results(bundle, threads=os.cpu_count() or 1, stride=args.stride))
        return 0
    results = evaluate_bundle(bundle, cifar)
    for view in ("test_images", "test_canvas_tiles"):
        r = results[view]
        per = ", ".join(f"{c} {v:.4f}" for c, v in r["per_class_accuracy"].items())
        print(f"{view}: balanced accuracy {r['balanced_accuracy']:.4f} ({per}) on {r['count']:,}")
    results["test_collages"] = collage_results(bundle, threads=os.cpu_count() or 1)
    _print_collages(results["test_collages"])
    record_path = os.path.join(args.model, RECORD)
    if args.write:
        with open(record_path, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")
        write_model_card(args.model, results)
        print(f"recorded in {record_path} and {os.path.join(args.model, 'MODEL.md')}")
        return 0
    if not os.path.exists(record_path):
        raise TilescanError(f"no recorded results in {record_path}; run with --write")
    with open(record_path) as fh:
        recorded = json.load(fh)
    same = all(recorded.get(v) == json.loads(json.dumps(results[v])) for v in VIEWS)
    print("reproduced: the recorded results match" if same else "MISMATCH: the recorded results differ")
    return 0 if same else 1


def _print_collages(block: dict) -> None:
    s = block["settings"]
    print(f"test collages at stride {s.get('stride', 16)}, thresholds {s['thresholds']}, merge {s['merge']} at IoU "
          f"{s['merge_iou']}, engine {s['engine']}:")
    for name, collage in block["collages"].items():
        for c, m in collage["classes"].items():
            print(f"{name}: {c} AP50 {m['ap50']:.3f} AP50:95 {m['ap']:.3f} precision {m['precision'] or 0:.3f} "
                  f"recall {m['recall'] or 0:.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.evaluate_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--model", default="models/default", help="bundle folder (default %(default)s)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder (default $TILESCAN_DATA/cifar10)")
    p.add_argument("--write", action="store_true", help="record the results in the bundle")
    p.add_argument("--stride", type=int, help="only score the test collages, at this stride, with the thresholds and "
                                              "merging chosen for it where the model recorded them (not with --write)")
    args = p.parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
