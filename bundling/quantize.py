"""An int8 copy of any bundle's model, calibrated on windows of the user's own pictures and
recommended only where it agrees with the float model on windows held back from calibration.

The figures (top-1 agreement, probability differences and, where a COCO ground truth of
some of the pictures is given, AP50 per class of both engines) are recorded in
``model.json``'s ``int8.agreement``; the bundle recommends ``--engine onnxruntime-int8`` only when they hold
within :data:`AGREEMENT_TOLERANCE`. The numerics check of every engine load applies as
well (:mod:`engines.numerics`): the golden batch is made again with the int8 tolerance.
The declared contract is never rewritten.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from bundling.windows import picture_windows
from core.bundle import MODEL_JSON, load_bundle, update_model_json
from core.cpu import this_cpu
from core.errors import InputError
from engines import create_engine
from pixels import read_image
from training.quantize import add_int8_model

__all__ = ["quantize_bundle", "QuantizeReport", "AGREEMENT_TOLERANCE", "HELD_OUT_SHARE", "INT8_ENGINE"]

INT8_ENGINE = "onnxruntime-int8"
#: What an int8 copy must show on the held-back windows to be recommended: the same top class
#: on this share of them, and probabilities this close to the float model's on average.
AGREEMENT_TOLERANCE = {"top1_agreement_min": 0.99, "probability_mean_max": 0.01, "ap50_loss_max": 0.01}
#: The largest picture scored whole for AP (both engines score every window of it).
TRUTH_MAX_PIXELS = 64_000_000
#: The share of the windows cut from the user's pictures kept back from calibration, for validation.
HELD_OUT_SHARE = 1 / 3


@dataclass(frozen=True)
class QuantizeReport:
    """What the int8 copy showed against the float model on the held-back windows."""

    calibration_windows: int
    held_out_windows: int
    top1_agreement: float
    probability_max: float
    probability_mean: float
    holds: bool
    bundle_sha256: str
    #: AP50 per class over the pictures the ground truth names: ``{"float32": {...}, "int8": {...}}``.
    ap50: dict | None = None

    def line(self) -> str:
        verdict = f"recommended (--engine {INT8_ENGINE})" if self.holds else \
            "NOT recommended: the float engine stays the model's"
        ap = "" if not self.ap50 else "; AP50 " + ", ".join(
            f"{c} {self.ap50['float32'][c]:.3f} -> {self.ap50['int8'][c]:.3f}" for c in self.ap50["float32"])
        return (f"int8 on {self.held_out_windows} held-back windows: top-1 agreement {self.top1_agreement:.4f}, "
                f"probabilities within {self.probability_max:.3g} (mean {self.probability_mean:.3g}) of float32{ap}; "
                f"{verdict}; bundle {self.bundle_sha256[:12]}")


def quantize_bundle(bundle_dir: str, calibration: str, *, count: int = 1200, seed: int = 0, truth: str | None = None,
                    storage_options: dict | None = None, **options) -> QuantizeReport:
    """Add an int8 copy of the local bundle's model, calibrated on ``count`` windows cut from the
    pictures ``calibration`` names, validated on a share of them held back and, with ``truth``
    (a COCO file whose images' ``file_name`` name some of those pictures), on AP50 per class
    of both engines over those pictures, scored whole at the bundle's settings.

    ``options`` go to :func:`training.quantize.add_int8_model` (``quant_format``, ``per_channel``,
    ``reduce_range``).
    """
    bundle = load_bundle(bundle_dir)
    covered = None if truth is None else _truth_pictures(truth, calibration, storage_options)  # before any write
    windows = picture_windows(calibration, bundle.spec.size, count, seed=seed, storage_options=storage_options)
    held = max(1, int(round(len(windows) * HELD_OUT_SHARE)))
    if len(windows) - held < 1:
        raise ValueError(f"`count` must leave windows to calibrate on after {held} held back, got {count}")
    if bundle.recommended.get("engine") == INT8_ENGINE:  # a new int8 copy is not recommended until it holds
        update_model_json(bundle_dir, recommended={k: v for k, v in bundle.recommended.items() if k != "engine"})
    add_int8_model(bundle_dir, windows[held:], **options)
    bundle = load_bundle(bundle_dir)
    held_out = np.ascontiguousarray(windows[:held].transpose(0, 3, 1, 2))
    float_probs = create_engine(bundle, "onnxruntime").predict(held_out)
    int8_probs = create_engine(bundle, INT8_ENGINE).predict(held_out)
    gap = np.abs(float_probs.astype(np.float64) - int8_probs)
    agreement = float(np.mean(float_probs.argmax(axis=1) == int8_probs.argmax(axis=1)))
    holds = (agreement >= AGREEMENT_TOLERANCE["top1_agreement_min"]
             and float(gap.mean()) <= AGREEMENT_TOLERANCE["probability_mean_max"])
    ap50 = None
    if truth is not None:
        ap50 = _ap50_both(bundle, covered, storage_options)
        holds = holds and all(ap50["int8"][c] >= ap50["float32"][c] - AGREEMENT_TOLERANCE["ap50_loss_max"]
                              for c in ap50["float32"])
    figures = {"calibration_windows": len(windows) - held, "held_out_windows": held, "pictures": calibration,
               "top1_agreement": agreement, "probability_max": float(gap.max()), "probability_mean": float(gap.mean()),
               **({"ap50": ap50, "truth": truth} if ap50 else {}),
               "tolerance": AGREEMENT_TOLERANCE, "holds": holds, "cpu": this_cpu().describe()}
    with open(os.path.join(bundle_dir, MODEL_JSON)) as fh:
        doc = json.load(fh)
    recommended = dict(doc.get("recommended") or {})
    if holds:
        recommended["engine"] = INT8_ENGINE
    elif recommended.get("engine") == INT8_ENGINE:
        del recommended["engine"]
    int8 = {**doc["int8"], "agreement": figures}
    sha = update_model_json(bundle_dir, int8=int8, recommended=recommended)
    return QuantizeReport(figures["calibration_windows"], held, agreement, figures["probability_max"],
                          figures["probability_mean"], holds, sha, ap50)


def _truth_pictures(truth: str, calibration: str, storage_options) -> list[tuple[str, dict]]:
    """The pictures of ``calibration`` the COCO file ``truth`` covers: ``(url, one-image COCO truth)``."""
    from scoring.inputs import resolve_source

    try:
        with open(truth) as fh:
            doc = json.load(fh)
        images, categories = doc["images"], doc["categories"]
        by_image = {}
        for annotation in doc.get("annotations", []):
            by_image.setdefault(annotation["image_id"], []).append(annotation)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--truth {truth}: not a readable COCO file ({type(exc).__name__}: {exc})") from None
    urls = resolve_source(calibration, storage_options=storage_options).urls
    by_name = {os.path.basename(url): url for url in urls}
    covered = [(by_name[os.path.basename(str(image.get("file_name")))],
                {"images": [image], "categories": categories, "annotations": by_image.get(image.get("id"), [])})
               for image in images if os.path.basename(str(image.get("file_name"))) in by_name]
    if not covered:
        raise InputError(f"--truth {truth} names none of the --calibration pictures (by file name)")
    return covered


def _ap50_both(bundle, covered: list[tuple[str, dict]], storage_options) -> dict:
    """AP50 per foreground class of the float and the int8 engine, averaged over the ``covered``
    pictures, each scored whole at the bundle's settings."""
    from evaluation.tuning import TestPicture, picture_metrics, score_picture
    from scoring.params import resolve_settings

    spec = bundle.spec
    settings = resolve_settings(spec, bundle.recommended)
    engines = {"float32": create_engine(bundle, "onnxruntime"), "int8": create_engine(bundle, INT8_ENGINE)}
    results = {precision: [] for precision in engines}
    for url, one in covered:
        pixels, _ = read_image(url, max_pixels=TRUTH_MAX_PIXELS, min_side=spec.size, storage_options=storage_options)
        picture = TestPicture(os.path.basename(url), pixels, one)
        for precision, engine in engines.items():
            table = score_picture(pixels, engine, stride=max(1, spec.size // 2))
            results[precision].append(picture_metrics(table, picture, spec, thresholds=settings.thresholds,
                                                      merge=settings.merge, iou=settings.merge_iou))
    return {precision: {c: round(float(np.mean([r["classes"][c]["ap50"] or 0.0 for r in found])), 4)
                        for c in spec.foreground} for precision, found in results.items()}
