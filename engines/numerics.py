"""The numerics check an engine passes when it loads: the bundle's golden batch, run and compared.

An engine's outputs on the golden windows (:mod:`core.golden`) must stay within the
bundle's tolerance for the engine's precision of the float model's reference outputs.
It runs once per engine load: on the driver before Spark starts, and in each executor's
Python worker before its first band (a few dozen windows: milliseconds). A failure is one
line naming the host, its CPU and instruction sets, the engine, how far it strayed, and
what to do instead (:meth:`NumericsCheck.failure_line`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from core.cpu import CpuInfo, this_cpu
from core.errors import TilescanError
from core.golden import Difference, GoldenBatch, Tolerance, difference

__all__ = ["NumericsCheck", "NumericsError", "check_engine", "PASSED", "FAILED", "UNCHECKED", "FLOAT_ENGINE"]

PASSED, FAILED, UNCHECKED = "passed", "failed", "unchecked"
#: The engine a failed int8 check points to: the same model file's float32 weights.
FLOAT_ENGINE = "onnxruntime"


@dataclass(frozen=True)
class NumericsCheck:
    """What one engine load's check found, on one host; travels from executors to the driver.

    ``status`` is :data:`PASSED`, :data:`FAILED` or :data:`UNCHECKED` (``reason`` says why:
    a bundle made before bundles carried a golden batch, or no tolerance for this
    precision).
    """

    engine: str
    precision: str
    status: str
    cpu: CpuInfo
    windows: int = 0
    difference: Difference | None = None
    tolerance: Tolerance | None = None
    seconds: float = 0.0
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def summary(self) -> str:
        """One line for people: ``"onnxruntime-int8 on host (CPU; AVX2, no VNNI): passed, ..."``."""
        where = f"{self.engine} on {self.cpu.host} ({self.cpu.describe()})"
        if self.status == UNCHECKED:
            return f"{where}: not checked ({self.reason})"
        d, t = self.difference, self.tolerance
        deltas = "" if d.delta_max is None else f", box deltas up to {d.delta_max:.2g}"
        allowed = "" if t is None else (f" (allowed {t.probability_max:.2g} / {t.probability_mean:.2g}"
                                        + ("" if d.delta_max is None or t.delta_max is None
                                           else f" / {t.delta_max:.2g}") + ")")
        return (f"{where}: {self.status} on {self.windows} golden windows in {1000 * self.seconds:.0f} ms, "
                f"probabilities within {d.probability_max:.2g} (mean {d.probability_mean:.2g}){deltas} "
                f"of the float model's{allowed}")

    def failure_line(self) -> str:
        """The one line a run fails with: where (host, CPU, instruction sets), which engine, how far
        it strayed against what is allowed, and what to do (kept well under the 400 characters
        of an error line)."""
        d, t = self.difference, self.tolerance
        deltas = "" if d.delta_max is None or t.delta_max is None else \
            f", box deltas by up to {d.delta_max:.2g} (allowed {t.delta_max:.2g})"
        if self.precision == "int8":
            cause = "" if self.cpu.exact_int8 else "int8 kernels without VNNI saturate: "
            remedy = f"{cause}use --engine {FLOAT_ENGINE} (float32)"
        else:
            remedy = (f"check this host's {self.engine} installation, and that model.json's contract is the one "
                      "its golden batch was made with")
        return (f"{self.engine} on {self.cpu.host} ({self.cpu.describe()}) answers unlike the model on its "
                f"{self.windows} golden windows: probabilities off by up to {d.probability_max:.2g} (mean "
                f"{d.probability_mean:.2g}; allowed {t.probability_max:.2g} / {t.probability_mean:.2g}){deltas}; "
                f"{remedy}")

    def to_json(self) -> dict:
        return {"engine": self.engine, "precision": self.precision, "status": self.status, **self.cpu.to_json(),
                "windows": self.windows, "seconds": round(self.seconds, 4),
                "difference": None if self.difference is None else self.difference.to_json(),
                **({"reason": self.reason} if self.reason else {})}


class NumericsError(TilescanError):
    """An engine failed its numerics check; ``check`` holds what was found."""

    def __init__(self, check: NumericsCheck) -> None:
        super().__init__(check.failure_line())
        self.check = check


def check_engine(engine, golden: GoldenBatch | None) -> NumericsCheck:
    """Run ``golden``'s windows through a loaded ``engine`` and compare with the references.

    Returns the :class:`NumericsCheck`; the caller decides what a failure means.
    """
    cpu = this_cpu()
    if golden is None:
        return NumericsCheck(engine.name, engine.precision, UNCHECKED, cpu,
                             reason="the bundle carries no golden batch: it was made before tilescan checked engines")
    tolerance = golden.tolerance(engine.precision)
    if tolerance is None:
        return NumericsCheck(engine.name, engine.precision, UNCHECKED, cpu,
                             reason=f"the bundle's golden batch gives no tolerance for {engine.precision} engines")
    started = time.perf_counter()
    probabilities, deltas = engine.detect(golden.windows)
    seconds = time.perf_counter() - started
    measured = difference(golden, probabilities, deltas)
    status = PASSED if tolerance.admits(measured) else FAILED
    return NumericsCheck(engine.name, engine.precision, status, cpu, len(golden), measured, tolerance, seconds)
