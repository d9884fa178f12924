"""Storage requests per picture: a collection read from and written to the Azurite emulator.

    python -m benchmarks.storage [--quick]

Two runs of ``spark-submit app/score.py --image az://C/in-N/ --out az://C/out-N`` at local[2]
over N = 10 and N = 20 tiny pictures (5 and 10 with --quick), each against a fresh Azurite
started with ``--debug``, which logs every request it serves and the Blob operation it
was. The difference between the two runs, divided by the difference in pictures, is what
each picture costs; the rest is what a run costs whatever its size. Every request is put
in one phase by the path it touched: the pictures (``read``), the destination's checks,
probe and lock (``destination``), a picture's staged files (``staging``) and moving them
into place (``commit``). On a real lake each request costs a round trip (tens of
milliseconds), so the count, not Azurite's time, is the figure to compare.
"""
from __future__ import annotations

import collections
import logging
import os
import sys

from benchmarks.common import synthetic_png

__all__ = ["run", "phase_of", "main", "PICTURES", "QUICK_PICTURES"]

logger = logging.getLogger(__name__)

PICTURES, QUICK_PICTURES = (10, 20), (5, 10)
SIDE = 256

def phase_of(request: dict, container: str, inputs: str) -> str:
    """``read``, ``destination``, ``probe``, ``staging``, ``commit`` or ``other``, from the path a request touched
    (a listing: from its prefix)."""
    path = request["path"].split(f"/{container}", 1)[-1].lstrip("/")
    prefix = (request["query"].get("prefix") or [""])[0]
    target = path or prefix
    if target.startswith(inputs):
        return "read"
    if "/_temporary-" in target or target.split("/", 1)[-1].startswith("_temporary-"):
        return "probe" if "/probe" in target else "staging"
    name = target.rstrip("/").rsplit("/", 1)[-1]
    if name in ("_commit.lock", "_tilescan", "_SUCCESS") or "/" not in target.rstrip("/"):
        return "destination"
    if target:
        return "commit"
    return "other"


def _one_run(model: str, work: str, count: int) -> dict:
    from benchmarks.end_to_end import run_score
    from core.transfer import transfer
    from localservices.azurite import Azurite

    folder = os.path.join(work, "storage", f"run-{count}")
    pictures = os.path.join(folder, "pictures")
    for k in range(count):
        synthetic_png(os.path.join(pictures, f"p{k:03d}.png"), SIDE, SIDE, seed=k)
    os.makedirs(os.path.join(folder, "azurite"), exist_ok=True)
    log = os.path.join(folder, "azurite-debug.log")
    if os.path.exists(log):
        os.remove(log)
    azurite = Azurite(os.path.join(folder, "azurite"), debug_log=log).start()
    saved = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    try:
        container = azurite.create_container()
        options = {"connection_string": azurite.connection_string()}
        inputs = f"in-{count}/"
        if not transfer(pictures, f"az://{container}/{inputs}", threads=4, storage_options=options,
                        progress=False).ok:
            raise RuntimeError("the pictures could not be uploaded to Azurite")
        start = azurite.mark()
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string()
        done = run_score(model, f"az://{container}/{inputs}", f"az://{container}/out-{count}", cores=2,
                         engine=None, log=os.path.join(folder, "score.log"))
        requests = azurite.requests_between(start, azurite.mark())
    finally:
        if saved is None:
            os.environ.pop("AZURE_STORAGE_CONNECTION_STRING", None)
        else:
            os.environ["AZURE_STORAGE_CONNECTION_STRING"] = saved
        azurite.stop()
    by_phase = collections.Counter(phase_of(r, container, inputs) for r in requests)
    by_operation = collections.Counter(r["operation"] or f"{r['method']} (not routed)" for r in requests)
    return {"pictures": count, "requests": len(requests), "command_s": done["command_s"],
            "by_phase": dict(by_phase), "by_operation": dict(by_operation)}


def run(model: str, work: str, *, quick: bool = False) -> dict:
    """The two runs and what one more picture costs, by phase and by operation."""
    small, large = (_one_run(model, work, n) for n in (QUICK_PICTURES if quick else PICTURES))
    extra = large["pictures"] - small["pictures"]

    def per_picture(key: str) -> dict:
        names = set(small[key]) | set(large[key])
        return {n: (large[key].get(n, 0) - small[key].get(n, 0)) / extra for n in sorted(names)}

    each = (large["requests"] - small["requests"]) / extra
    from scoring.outputs import OUTPUT_FILES

    return {"side": SIDE, "runs": [small, large], "per_picture": each, "files_per_picture": len(OUTPUT_FILES),
            "fixed": small["requests"] - each * small["pictures"],
            "per_picture_by_phase": per_picture("by_phase"), "per_picture_by_operation": per_picture("by_operation")}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda _, inputs, args: report.storage_section(
        run(inputs.model, inputs.work, quick=args.quick)), argv, spark=False)


if __name__ == "__main__":
    sys.exit(main())
