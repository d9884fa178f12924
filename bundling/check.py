"""``tilescan-bundle check``: every engine a bundle has files for, loaded and checked here."""
from __future__ import annotations

from core.bundle import load_bundle
from engines import ENGINES, EngineUnavailable, engine_class
from engines.preflight import preflight

__all__ = ["check_bundle"]


def check_bundle(url: str, *, batch_size: int = 128, storage_options: dict | None = None) -> list[str]:
    """Load the bundle at ``url`` and run each engine it has the files for through its numerics
    check and self-check (:func:`engines.preflight.preflight`); one line per engine.

    An engine whose framework is not installed here is reported as such, not as a failure.

    Raises
    ------
    TilescanError
        One line, at the first engine that fails (the bundle's files, its contract or its numbers).
    """
    bundle = load_bundle(url, storage_options=storage_options)
    spec = bundle.spec
    lines = [f"{bundle.source}: {spec.name}, {spec.size}x{spec.size} {spec.layout} {spec.dtype} {spec.channel_order}, "
             f"output {spec.output} over {', '.join(spec.classes)}; bundle {bundle.sha256[:12]}"]
    for name in ENGINES:
        try:
            needed = engine_class(name).required_files
        except EngineUnavailable as exc:
            lines.append(f"{name}: not checked ({exc})")
            continue
        if not set(needed) <= set(bundle.files):
            continue
        try:
            checked = preflight(bundle, name, batch_size=batch_size)
        except EngineUnavailable as exc:
            lines.append(f"{name}: not checked ({exc})")
            continue
        dense = checked.self_check.dense
        lines.append(f"{name}: {checked.numerics.summary()}; self-check on batches of "
                     f"{' and '.join(map(str, checked.self_check.batch_sizes))} passed"
                     + (f"; {dense.summary()}" if dense else ""))
    return lines
