"""What the zoomable viewer costs a run: the dense picture of :mod:`benchmarks.dense` scored
with its viewer (the default) and with ``--no-viewer``, alternately, on a warm local
SparkSession in this process; the best of each, and their ratio.

    python -m benchmarks.viewer_cost [--model models/default] [--quick]

Also the viewer's files (the tile pyramid, the page, OpenSeadragon): their count and bytes.
"""
from __future__ import annotations

import logging
import os
import sys
import time

__all__ = ["run", "main", "ROUNDS"]

logger = logging.getLogger(__name__)

#: Rounds of the pair (with, without); the best of each is the figure.
ROUNDS = 4


def run(spark, model: str, work: str, *, quick: bool = False) -> dict:
    from benchmarks.common import folder_size, synthetic_png
    from benchmarks.dense import QUICK_SIDE, SIDE, dense_collage
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare
    from scoring.pipeline import run as run_pipeline

    side = QUICK_SIDE if quick else SIDE
    picture = dense_collage(work, side)
    warm = synthetic_png(os.path.join(work, "dense", "warm-up.png"), 256, 256)
    run_pipeline(prepare(ScoreParams(image=warm, out=os.path.join(work, "viewer", "warm-up"), model=model,
                                     overwrite=True, quiet=True)), spark)
    seconds = {True: [], False: []}
    out = {viewer: os.path.join(work, "viewer", "with" if viewer else "without") for viewer in (True, False)}
    manifests = {}
    logger.info("viewer: %dx%d dense picture, with and without the viewer", side, side)
    for _ in range(1 if quick else ROUNDS):
        for viewer in (True, False):
            os.utime(picture)  # no worker holds a decoded copy from an earlier run
            started = time.time()
            manifests[viewer] = run_pipeline(prepare(ScoreParams(image=picture, out=out[viewer], model=model,
                                                                 viewer=viewer, overwrite=True, quiet=True)), spark)
            seconds[viewer].append(time.time() - started)
    files, size = folder_size(os.path.join(out[True], manifests[True]["viewer"]["folder"]))
    best = {viewer: min(times) for viewer, times in seconds.items()}
    return {"side": side, "windows": manifests[True]["counts"]["windows_scored"],
            "boxes": manifests[True]["counts"]["boxes"], "with_s": best[True], "without_s": best[False],
            "ratio": best[True] / best[False], "rounds": {"with": seconds[True], "without": seconds[False]},
            "files": files, "bytes": size,
            "page_bytes": os.path.getsize(os.path.join(out[True], "viewer.html"))}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda spark, inputs, args: report.viewer_section(
        run(spark, inputs.model, inputs.work, quick=args.quick)), argv)


if __name__ == "__main__":
    sys.exit(main())
