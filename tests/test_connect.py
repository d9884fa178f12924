"""score_images on a Spark Connect session: the same outputs as on a classic session.

pyspark 4's wheel carries the Spark Connect server, so ``SparkSession.builder.remote("local[2]")``
starts a real one on 127.0.0.1 for the test. It runs in a process of its own (a process holds
one Spark driver, and this one holds the classic session the other tests share); the classic
run of the same pictures runs here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from core.project import ROOT
from scoring.api import score_images
from tests.conftest import write_noise_png

OPTIONS = {"keep": 0.0, "threshold": 0.34, "quiet": True, "strips": 3}


def _connect_server_available() -> str | None:
    """Why a local Spark Connect server cannot start here, or None."""
    import importlib.util

    import pyspark

    jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
    if not any(name.startswith("spark-connect_") for name in os.listdir(jars)):
        return f"pyspark {pyspark.__version__}'s wheel carries no Spark Connect server (pyspark 4 does)"
    missing = [m for m in ("grpc", "google.rpc") if importlib.util.find_spec(m.split(".")[0]) is None]
    return f"Spark Connect's client needs {', '.join(missing)} (the connect extra)" if missing else None


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("connect-pictures")
    return [write_noise_png(folder / "wide.png", 200, 120, seed=11),
            write_noise_png(folder / "tall.png", 90, 170, seed=12)]


def _connect_run(pictures: list, model: str, out, workdir) -> dict:
    script = workdir / "on_connect.py"
    script.write_text(
        "import json, sys\n"
        "from pyspark.sql import SparkSession\n"
        "from scoring.api import score_images\n"
        "spark = SparkSession.builder.remote('local[2]').getOrCreate()\n"
        "assert type(spark).__module__.startswith('pyspark.sql.connect'), type(spark)\n"
        f"run = score_images(spark, {pictures!r}, {str(out)!r}, model={model!r}, job_group='on-connect',"
        f" **{OPTIONS!r})\n"
        "print('MANIFEST ' + json.dumps(run.manifest))\n"
        "spark.stop()\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=workdir, env=env,
                          timeout=400)
    said = [line for line in done.stdout.splitlines() if line.startswith("MANIFEST ")]
    assert done.returncode == 0 and said, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(said[0][len("MANIFEST "):])


@pytest.mark.slow
def test_score_images_on_spark_connect_equals_the_classic_session(spark, pictures, random_bundle_dir, tmp_path):
    why = _connect_server_available()
    if why:
        pytest.skip(why)
    connect_manifest = _connect_run(pictures, random_bundle_dir, tmp_path / "connect", tmp_path)
    classic = score_images(spark, pictures, str(tmp_path / "classic"), model=random_bundle_dir, **OPTIONS)

    assert connect_manifest["counts"] == classic.manifest["counts"]
    assert {**connect_manifest["parameters"], "out": None} == {**classic.manifest["parameters"], "out": None}
    assert [(p["name"], p["status"], p["counts"]) for p in connect_manifest["pictures"]] == \
        [(p["name"], p["status"], p["counts"]) for p in classic.pictures]
    for name in ("wide", "tall"):
        part = os.path.join("windows", f"image={name}", "part-00000.parquet")  # the picture's windows, once
        ours = pq.read_table(tmp_path / "classic" / part).to_pylist()
        theirs = pq.read_table(tmp_path / "connect" / part).to_pylist()
        assert len(ours) == len(theirs) > 0
        for a, b in zip(sorted(ours, key=lambda r: (r["y"], r["x"])), sorted(theirs, key=lambda r: (r["y"], r["x"]))):
            assert a.keys() == b.keys()
            for key in a:
                if isinstance(a[key], float):
                    assert abs(a[key] - b[key]) <= 1e-5, (name, key)
                else:
                    assert a[key] == b[key], (name, key)
        boxes = [json.loads((tmp_path / run / name / "detections.json").read_text())["annotations"]
                 for run in ("classic", "connect")]
        assert boxes[0] == boxes[1]
    assert (tmp_path / "connect" / "_SUCCESS").exists()
