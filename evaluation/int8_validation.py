"""Whether a bundle's int8 model holds against its float model on the CPU it runs on.

The int8 model is recommended only where it holds: AP50 per class, on validation
pictures scored at the bundle's settings, within a tolerance of the float model's. Which
kernels ONNX Runtime picks, and so the int8 answers, depend on the CPU
(:mod:`core.cpu`), so the measurement names the CPU and a bundle records one per CPU it
was validated on. Both engines' speed on this CPU is measured beside it, on the path a run
at the bundle's defaults takes: one thread, the job's batch size of windows (or, for a model
that scores whole bands at its default stride, the job's dense passes), interleaved rounds
(the best one counts: a shared machine only ever slows a round down).
"""
from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

import numpy as np

from core.cpu import this_cpu
from evaluation.tuning import picture_metrics, score_picture
from scoring.params import default_stride
from scoring.paths import DENSE_PASS_PIXELS
from scoring.windows import dense_passes, window_batches
from tiling import WindowGrid

__all__ = ["ap50_per_class", "windows_per_second", "speed_setup", "validate_on_this_cpu", "SPEED_BATCH"]

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


def windows_per_second(engines: dict, windows: np.ndarray | None = None, *, band: np.ndarray | None = None,
                       band_windows: int = 0, rounds: int = 5, seconds: float = 1.0) -> dict:
    """Windows per second of each engine on ``windows`` (one batch), or on one dense pass over
    ``band`` that yields ``band_windows`` windows; best of ``rounds`` interleaved rounds."""
    if band is None:
        calls = {name: functools.partial(engine.predict, windows) for name, engine in engines.items()}
        count = len(windows)
    else:
        calls = {name: functools.partial(engine.detect_band, band) for name, engine in engines.items()}
        count = band_windows
    best = dict.fromkeys(engines, 0.0)
    for call in calls.values():
        call()  # warm: the first call plans its memory
    for _ in range(rounds):
        for name, call in calls.items():
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                call()
                done += 1
            best[name] = max(best[name], done * count / (time.perf_counter() - started))
    return {name: round(rate) for name, rate in best.items()}


def speed_setup(pictures, spec, stride: int) -> tuple[dict, str]:
    """What :func:`windows_per_second` times for a run at ``stride``, and how to say it: for a
    model that scores whole bands at that stride, one dense pass as large as the job's over the
    first picture (its windows at ``stride``); else the job's first batch of windows at ``stride``."""
    pixels = pictures[0].pixels
    size = spec.size
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], size, stride)
    if spec.dense_stride and stride % spec.dense_stride == 0:
        on_grid = [int((np.asarray(axis) % stride == 0).sum()) for axis in (grid.ys, grid.xs)]
        r0, r1, c0, c1 = next(dense_passes(*on_grid, size, stride, DENSE_PASS_PIXELS))
        height, width = size + (r1 - r0 - 1) * stride, size + (c1 - c0 - 1) * stride
        band = np.ascontiguousarray(pixels[:height, :width].transpose(2, 0, 1))
        windows = (r1 - r0) * (c1 - c0)
        return ({"band": band, "band_windows": windows},
                f"dense passes of {height}x{width} px, {windows:,} windows at stride {stride}")
    _, batch = next(window_batches(pixels, grid.ys, grid.xs, size, batch_size=SPEED_BATCH))
    return {"windows": batch}, f"batches of {len(batch)} windows at stride {stride}"


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
        precision and class, ``holds``, ``windows_per_s`` per precision, what was timed
        (``speed_path``) and ``int8_speedup``, and ``golden``: each engine's numerics check where it was loaded.
    """
    ap50 = {precision: ap50_per_class(engine, pictures, spec, settings) for precision, engine in scoring.items()}
    holds = all(ap50["int8"][c] >= ap50["float32"][c] - tolerance for c in ap50["float32"])
    speed, speed_path = speed_setup(pictures, spec, default_stride(spec, settings))
    rates = windows_per_second(timing, **speed, rounds=rounds)
    golden = {}
    for precision, engine in scoring.items():
        check = engine.numerics.to_json() if engine.numerics is not None else None
        golden[precision] = check and {k: v for k, v in check.items() if k in ("status", "difference", "reason")}
    cpu = this_cpu()
    return {"cpu": {"model": cpu.model, "isa": list(cpu.isa)},
            "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"), "ap50": ap50, "holds": holds,
            "windows_per_s": rates, "speed_path": speed_path,
            "int8_speedup": round(rates["int8"] / rates["float32"], 2), "golden": golden}
