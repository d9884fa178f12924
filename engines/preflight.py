"""Everything an engine would trip on in the executors, found on the driver before Spark starts.

Executors report errors late and wrapped in Py4J traces, so the driver loads the run's
engine once and finds there: the engine's framework missing, the bundle lacking the
engine's files, files the engine cannot load or whose graph contradicts ``model.json``,
outputs on the golden batch that stray from the float model's (:mod:`engines.numerics`),
and a model that does not keep its contract on real batches (:mod:`engines.self_check`).
Each is one line.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.bundle import ModelBundle
from core.errors import BundleError, TilescanError
from core.redaction import redact
from engines import EngineUnavailable, create_engine, engine_class
from engines.numerics import NumericsCheck, NumericsError, check_engine
from engines.self_check import SelfCheck, self_check

__all__ = ["Preflight", "preflight"]


@dataclass(frozen=True)
class Preflight:
    """An engine that loaded and passed its checks here: the part of the bundle it needs, and
    what its numerics check and self-check found."""

    bundle: ModelBundle
    numerics: NumericsCheck
    self_check: SelfCheck


_passed: dict = {}  # (bundle sha256, engine, batch size) -> the Preflight of an earlier load here


def preflight(bundle: ModelBundle, engine: str, *, batch_size: int) -> Preflight:
    """Load ``engine`` on ``bundle`` here, run its numerics check and its self-check with
    ``batch_size`` windows. A bundle (its sha256 covers every file's) that passed once in
    this process with the same engine and batch size is not loaded again.

    Raises
    ------
    NumericsError
        When the engine fails its numerics check here (a caller may fall back to another engine).
    TilescanError
        One line for anything else (:class:`~core.errors.BundleError` for the bundle's own faults).
    """
    needed = engine_class(engine).required_files
    missing = [key for key in needed if key not in bundle.files]
    if missing:
        raise BundleError(f"model bundle {bundle.source} has no {' or '.join(missing)} file for --engine {engine} "
                          f"(it has: {', '.join(sorted(bundle.files))})")
    key = (bundle.sha256, engine, batch_size)
    if key in _passed:
        return _passed[key]
    subset = bundle.subset(needed)
    try:
        # The contract first: a model read against it answers unlike its golden batch too, and
        # the self-check says which part of the contract it breaks.
        loaded = create_engine(subset, engine, check=False)
        checked = self_check(loaded, batch_size)
        loaded.numerics = check_engine(loaded, subset.golden)
        if loaded.numerics.failed:
            raise NumericsError(loaded.numerics)
    except (NumericsError, EngineUnavailable):
        raise
    except ImportError as exc:
        raise EngineUnavailable(f"--engine {engine} needs {exc.name or 'a package'} installed ({exc})") from None
    except (TilescanError, ValueError) as exc:
        raise BundleError(f"model bundle {bundle.source}: {redact(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - frameworks raise their own types for unreadable models
        first = (str(redact(exc)).strip().splitlines() or [""])[0][:200]
        raise BundleError(f"model bundle {bundle.source}: the {engine} engine cannot load "
                          f"{', '.join(needed)} ({type(exc).__name__}: {first})") from None
    _passed[key] = Preflight(subset, loaded.numerics, checked)
    return _passed[key]
