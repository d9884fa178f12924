"""An int8 copy of any bundle's model, calibrated on windows of the user's own pictures and
recommended only where it agrees with the float model on windows held back from calibration.

The figures (top-1 agreement, probability differences) are recorded in ``model.json``'s
``int8.agreement``; the bundle recommends ``--engine onnxruntime-int8`` only when they hold
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
from engines import create_engine
from training.quantize import add_int8_model

__all__ = ["quantize_bundle", "QuantizeReport", "AGREEMENT_TOLERANCE", "HELD_OUT_SHARE", "INT8_ENGINE"]

INT8_ENGINE = "onnxruntime-int8"
#: What an int8 copy must show on the held-back windows to be recommended: the same top class
#: on this share of them, and probabilities this close to the float model's on average.
AGREEMENT_TOLERANCE = {"top1_agreement_min": 0.99, "probability_mean_max": 0.01}
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

    def line(self) -> str:
        verdict = f"recommended (--engine {INT8_ENGINE})" if self.holds else \
            "NOT recommended: the float engine stays the model's"
        return (f"int8 on {self.held_out_windows} held-back windows: top-1 agreement {self.top1_agreement:.4f}, "
                f"probabilities within {self.probability_max:.3g} (mean {self.probability_mean:.3g}) of float32; "
                f"{verdict}; bundle {self.bundle_sha256[:12]}")


def quantize_bundle(bundle_dir: str, calibration: str, *, count: int = 1200, seed: int = 0,
                    storage_options: dict | None = None, **options) -> QuantizeReport:
    """Add an int8 copy of the local bundle's model, calibrated on ``count`` windows cut from the
    pictures ``calibration`` names, validated on a share of them held back.

    ``options`` go to :func:`training.quantize.add_int8_model` (``quant_format``, ``per_channel``,
    ``reduce_range``).
    """
    bundle = load_bundle(bundle_dir)
    windows = picture_windows(calibration, bundle.spec.size, count, seed=seed, storage_options=storage_options)
    held = max(1, int(round(len(windows) * HELD_OUT_SHARE)))
    if len(windows) - held < 1:
        raise ValueError(f"`count` must leave windows to calibrate on after {held} held back, got {count}")
    add_int8_model(bundle_dir, windows[held:], **options)
    bundle = load_bundle(bundle_dir)
    held_out = np.ascontiguousarray(windows[:held].transpose(0, 3, 1, 2))
    float_probs = create_engine(bundle, "onnxruntime").predict(held_out)
    int8_probs = create_engine(bundle, INT8_ENGINE).predict(held_out)
    gap = np.abs(float_probs.astype(np.float64) - int8_probs)
    agreement = float(np.mean(float_probs.argmax(axis=1) == int8_probs.argmax(axis=1)))
    holds = (agreement >= AGREEMENT_TOLERANCE["top1_agreement_min"]
             and float(gap.mean()) <= AGREEMENT_TOLERANCE["probability_mean_max"])
    figures = {"calibration_windows": len(windows) - held, "held_out_windows": held, "pictures": calibration,
               "top1_agreement": agreement, "probability_max": float(gap.max()), "probability_mean": float(gap.mean()),
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
                          figures["probability_mean"], holds, sha)
