"""The dense picture through the Python API on a classic session and on a Spark Connect one.

    python -m benchmarks.connect [--model models/default] [--quick] [--baseline COMMIT]

The 3000 x 3000 picture of cars and boats (``benchmarks.dense``) scored by
``score_images`` at local[2], each kind of session in a process of its own (a process holds
one Spark driver), warmed up by a small run first; rounds alternate between the kinds, and
the best round of each is the figure. With ``--baseline COMMIT``, the classic session also
runs that commit's code (from a git worktree), in the same rounds: the classic path's speed
before and after a change, measured side by side.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile

from benchmarks.common import spark_env, synthetic_png
from benchmarks.dense import QUICK_SIDE, SIDE, dense_collage
from core.project import ROOT

__all__ = ["run", "main", "ROUNDS"]

logger = logging.getLogger(__name__)

ROUNDS = 3

#: The process of one kind of session: a warm-up, then the picture ``rounds`` times; prints a line of JSON.
_SESSION = """
import json, sys, time
from pyspark.sql import SparkSession
kind, model, picture, warm, out, rounds = sys.argv[1:7]
builder = SparkSession.builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
spark = (builder.remote("local[2]") if kind == "connect" else builder.master("local[2]")).getOrCreate()
from scoring.api import score_images
score_images(spark, [warm], out + "-warm", model=model, overwrite=True, quiet=True)
seconds = []
for k in range(int(rounds)):
    started = time.time()
    result = score_images(spark, [picture], out, model=model, overwrite=True, quiet=True)
    seconds.append(time.time() - started)
print("RESULT " + json.dumps({"seconds": seconds, "counts": result.manifest["counts"],
                               "spark_job_s": result.pictures[0]["timings_s"].get("score_s")}))
spark.stop()
"""


def _session_run(kind: str, code_root: str, model: str, picture: str, warm: str, out: str) -> dict:
    env = dict(spark_env(), PYTHONPATH=code_root)
    done = subprocess.run([sys.executable, "-c", _SESSION, kind, model, picture, warm, out, "1"], cwd=code_root,
                          env=env, capture_output=True, text=True, timeout=1800)
    found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not found:
        raise RuntimeError(f"{kind} session run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(found[0][len("RESULT "):])


def run(model: str, work: str, *, quick: bool = False, baseline: str | None = None) -> dict:
    side = QUICK_SIDE if quick else SIDE
    picture = dense_collage(work, side)
    warm = synthetic_png(os.path.join(work, "connect", "warm-up.png"), 256, 256)
    model = os.path.abspath(model)
    kinds = [("classic", ROOT), ("connect", ROOT)]
    worktree = None
    if baseline:
        worktree = tempfile.mkdtemp(prefix="tilescan-baseline-")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", worktree, baseline], check=True,
                       capture_output=True)
        kinds.append((f"classic at {baseline}", worktree))
    try:
        rounds = {name: [] for name, _ in kinds}
        counts = {}
        for number in range(1 if quick else ROUNDS):
            for name, root in kinds:
                logger.info("connect: round %d, %s", number + 1, name)
                got = _session_run(name.split()[0], root, model, picture, warm,
                                   os.path.join(work, "connect", name.replace(" ", "-")))
                rounds[name] += got["seconds"]
                counts[name] = got["counts"]
    finally:
        if worktree:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", worktree], capture_output=True)
    best = {name: min(seconds) for name, seconds in rounds.items()}
    windows = counts["classic"]["windows_scored"]
    return {"side": side, "windows": windows, "rounds": rounds, "best_s": best,
            "windows_per_s": {name: windows / s for name, s in best.items()},
            "connect_to_classic": best["classic"] / best["connect"],
            # Speeds, not times: above 1 is faster.
            "classic_to_baseline": best[f"classic at {baseline}"] / best["classic"] if baseline else None,
            "baseline": baseline, "same_counts": len({json.dumps(c, sort_keys=True) for c in counts.values()}) == 1}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    def go(_, inputs, args):
        return report.connect_section(run(inputs.model, inputs.work, quick=args.quick, baseline=args.baseline))

    return bench_main(__doc__, go, argv, spark=False,
                      arguments=lambda p: p.add_argument("--baseline", help="a git commit whose classic path runs too"))


if __name__ == "__main__":
    sys.exit(main())
