"""Whether a bundle's int8 model holds against its float model on the CPU it runs on.

The int8 model is recommended only where it holds: AP50 per class, on validation
pictures scored at the bundle's settings, within a tolerance of the float model's. Which
kernels ONNX Runtime picks, and so the int8 answers, depend on the CPU
(:mod:`core.cpu`), so the measurement names the CPU and a bundle records one per CPU it
was validated on. Both engines' speed on this CPU is measured beside it: one thread,
the job's batch size, interleaved rounds (the best one counts: a shared machine only
ever slows a round down).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np

from core.cpu import this_cpu
from evaluation.tuning import picture_metrics, score_picture
from scoring.params import default_stride
from scoring.windows import window_batches
from tiling import WindowGrid

__all__ = ["ap50_per_class", "windows_per_second", "validate_on_this_cpu", "SPEED_BATCH"]

#: Windows per timed call: the job's default --batch-size.
SPEED_BATCH = 128


def ap50_per_class(engine, pictures, spec, settings: dict) -> dict:
    """Mean AP50 per foreground class over ``pictures``, scored by ``engine`` at ``settings``
    (``threshold`` per class, ``merge``, ``merge_iou``, and ``stride`` if the model recommends
    one), rounded to 4 places."""
    stride = default_stride(spec, settings)
    results = [picture_metrics(score_picture(p.pixels, engine, stride=stride), p, spec,
                               thresholds=settings["threshold"],
                               merge=settings["merge"], iou=settings["merge_iou"]) for p in pictures]
    return {c: round(float(np.mean([r["classes"][c]["ap50"] or 0.0 for r in results])), 4) for c in spec.foreground}


def windows_per_second(engines: dict, windows: np.ndarray, *, rounds: int = 5, seconds: float = 1.0) -> dict:
    """Windows per second of each engine on ``windows`` (one batch), best of ``rounds`` interleaved rounds."""
    best = dict.fromkeys(engines, 0.0)
    for engine in engines.values():
        engine.predict(windows)  # warm: the first call plans its memory
    for _ in range(rounds):
        for name, engine in engines.items():
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                engine.predict(windows)
                calls += 1
            best[name] = max(best[name], calls * len(windows) / (time.perf_counter() - started))
    return {name: round(rate) for name, rate in best.items()}


def _speed_windows(pictures, size: int) -> np.ndarray:
    """The first ``SPEED_BATCH`` windows of the first picture at stride 16, as the job feeds the engine."""
    pixels = pictures[0].pixels
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], size, 16)
    _, batch = next(window_batches(pixels, grid.ys, grid.xs, size, batch_size=SPEED_BATCH))
    return batch


def validate_on_this_cpu(scoring: dict, timing: dict, pictures, spec, settings: dict, *, tolerance: float,
                         rounds: int = 5) -> dict:
    """How the int8 model holds here: the record a bundle keeps for this CPU.

    Parameters
    ----------
    scoring : dict
        ``{"float32": engine, "int8": engine}`` for the AP runs (any number of threads).
    timing : dict
        The same two engines loaded with one thread each, for the speed.
    pictures : list of :class:`evaluation.tuning.TestPicture`
        Validation pictures with their ground truth.
    settings : dict
        The bundle's recommended ``threshold``, ``merge`` and ``merge_iou``.
    tolerance : float
        AP50 the int8 model may lose per class and still hold.

    Returns
    -------
    dict
        ``cpu`` (its ``model`` and ``isa``, :class:`core.cpu.CpuInfo`), ``measured`` (UTC time), ``ap50`` per
        precision and class, ``holds``, ``windows_per_s`` per precision and
        ``int8_speedup``, and ``golden``: each engine's numerics check where it was loaded.
    """
    ap50 = {precision: ap50_per_class(engine, pictures, spec, settings) for precision, engine in scoring.items()}
    holds = all(ap50["int8"][c] >= ap50["float32"][c] - tolerance for c in ap50["float32"])
    rates = windows_per_second(timing, _speed_windows(pictures, spec.size), rounds=rounds)
    golden = {}
    for precision, engine in scoring.items():
        check = engine.numerics.to_json() if engine.numerics is not None else None
        golden[precision] = check and {k: v for k, v in check.items() if k in ("status", "difference", "reason")}
    cpu = this_cpu()
    return {"cpu": {"model": cpu.model, "isa": list(cpu.isa)},
            "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"), "ap50": ap50, "holds": holds,
            "windows_per_s": rates, "int8_speedup": round(rates["int8"] / rates["float32"], 2), "golden": golden}
