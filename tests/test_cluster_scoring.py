"""score.py on a real Spark standalone cluster on 127.0.0.1: same results as local mode (one
picture and a collection), and a worker killed in the middle of a job does not change them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.project import ROOT
from localservices.ports import free_ports
from scoring.params import ScoreParams
from scoring.pipeline import prepare, run
from scoring.stored_windows import windows_path
from tests.conftest import write_noise_png
from tests.helpers import assert_moves_inside_tasks, progress_lines, python_with
from tests.reference import assert_same_scores, table_scores
from tests.test_cluster_scripts import cluster, pids, up_args

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.spark]

CLASSES = ("car", "boat", "background")
THRESHOLD = "0.34"  # random weights: a low threshold so that there are boxes to compare


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """A master and two single-core workers; yields (master port, run dir)."""
    run_dir = tmp_path_factory.mktemp("cluster")
    port, webui = free_ports(2)
    up = cluster(*up_args(2, port, webui), run_dir=run_dir)
    if up.returncode != 0:
        cluster("down", run_dir=run_dir)  # whatever started before the failure
        pytest.fail(up.stdout + up.stderr)
    yield port, run_dir
    cluster("down", run_dir=run_dir)


@pytest.fixture(scope="module")
def resnet20_bundle():
    """The ResNet-20 detector, the default before the padding-free one: slow enough to interrupt."""
    return os.path.join(ROOT, "models", "resnet")


def submit(master: str, image: str, model: str, out, *extra, ui_port: int | None = None,
           event_log=None, env: dict | None = None, python: str = sys.executable,
           quiet: bool = True) -> subprocess.Popen:
    env = dict(os.environ if env is None else env, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=python,
               PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_CONF_DIR=os.path.join(ROOT, "conf"))
    ui = ["--conf", f"spark.ui.port={ui_port}", "--conf", "spark.port.maxRetries=0"] if ui_port else \
        ["--conf", "spark.ui.enabled=false"]
    if event_log is not None:
        ui += ["--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir=file://{event_log}",
               "--conf", "spark.eventLog.compress=false"]
    command = [os.path.join(os.path.dirname(sys.executable), "spark-submit"), "--master", master,
               "--executor-memory", "512m", *ui, os.path.join(ROOT, "app", "score.py"), "--image", image,
               "--out", str(out), "--model", model, "--keep", "0", "--threshold", THRESHOLD, *extra]
    if quiet:
        command.append("--quiet")
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-2000:] + err[-4000:]


def local_run(spark, image, model, out, strips):
    params = ScoreParams(image=image, out=str(out), model=model, keep=0.0, threshold={"*": float(THRESHOLD)},
                         strips=strips, quiet=True)
    run(prepare(params), spark)


def windows_of(folder) -> str:
    """A picture's windows, where its manifest says (a collection's picture: its part of the dataset)."""
    return windows_path(str(folder), json.load(open(folder / "manifest.json")))


def assert_same_outputs(got, want) -> None:
    assert_same_scores(table_scores(pq.read_table(windows_of(got)), CLASSES),
                       table_scores(pq.read_table(windows_of(want)), CLASSES))
    boxes = [json.load(open(folder / "detections.json"))["annotations"] for folder in (got, want)]
    assert len(boxes[0]) == len(boxes[1])
    for a, b in zip(*boxes):
        assert a["category_id"] == b["category_id"]
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-2)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_cluster_matches_local_mode(standalone, spark, tmp_path, small_image, random_bundle_dir):
    port, _ = standalone
    finish(submit(f"spark://127.0.0.1:{port}", small_image, random_bundle_dir, tmp_path / "cluster", "--strips", "6"))
    manifest = json.load(open(tmp_path / "cluster" / "manifest.json"))
    assert manifest["spark"]["master"] == f"spark://127.0.0.1:{port}"
    assert manifest["timings_s"]["python_workers"] == 2  # both workers scored
    local_run(spark, small_image, random_bundle_dir, tmp_path / "local", strips=3)
    assert_same_outputs(tmp_path / "cluster", tmp_path / "local")


def test_progress_moves_inside_running_tasks_on_the_cluster(standalone, tmp_path, random_bundle_dir):
    """An executor reaches the driver's progress socket: one picture in one task, an engine
    slowed to 0.05 s a batch, and the lines count windows before the task ends."""
    port, _ = standalone
    image = write_noise_png(tmp_path / "p.png", 400, 320, seed=3)
    proc = submit(f"spark://127.0.0.1:{port}", image, random_bundle_dir, tmp_path / "run", "--strips", "1",
                  "--batch-size", "16", env={**os.environ, "TILESCAN_TEST_PROGRESS_S": "0.2"}, quiet=False,
                  python=python_with(tmp_path, TILESCAN_TEST_SLOW_BATCH_S="0.05"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    # spark-submit sends the driver's stderr to its stdout
    assert_moves_inside_tasks(progress_lines(out + err), out[-2000:] + err[-2000:])


def test_a_collection_on_the_cluster_matches_local_mode(standalone, spark, tmp_path, random_bundle_dir):
    port, _ = standalone
    folder = tmp_path / "pictures"
    folder.mkdir()
    for seed, (width, height) in enumerate(((400, 90), (96, 300), (230, 230))):
        write_noise_png(folder / f"p{seed}.png", width, height, seed=seed)
    finish(submit(f"spark://127.0.0.1:{port}", str(folder), random_bundle_dir, tmp_path / "cluster"))
    manifest = json.load(open(tmp_path / "cluster" / "manifest.json"))
    assert [p["status"] for p in manifest["pictures"]] == ["scored"] * 3
    local = ScoreParams(image=str(folder), out=str(tmp_path / "local"), model=random_bundle_dir, keep=0.0,
                        threshold={"*": float(THRESHOLD)}, quiet=True)
    run(prepare(local), spark)
    for name in ("p0", "p1", "p2"):
        assert_same_outputs(tmp_path / "cluster" / name, tmp_path / "local" / name)


def test_executors_reach_the_lake_with_the_drivers_credentials(standalone, spark, tmp_path, azurite, small_image,
                                                               random_bundle_dir):
    """The workers' environment has no AZURE_STORAGE_*: the driver's credentials travel with the tasks."""
    from core.transfer import transfer
    from localservices.azurite import AZURE_ENV

    port, run_dir = standalone
    for pid in pids(run_dir).values():
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        assert not [v for v in environ if v.split(b"=")[0].decode(errors="replace") in AZURE_ENV]
    name = azurite.create_container()
    options = {"connection_string": azurite.connection_string()}
    assert transfer(small_image, f"az://{name}/in/small.png", storage_options=options, progress=False).ok
    driver_env = {k: v for k, v in os.environ.items() if k not in AZURE_ENV}
    driver_env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string()
    proc = submit(f"spark://127.0.0.1:{port}", f"az://{name}/in/small.png", random_bundle_dir, f"az://{name}/run",
                  env=driver_env)
    finish(proc)
    blobs = azurite.blobs(name, "run/")
    assert {"run/_SUCCESS", "run/windows.parquet", "run/detections.json"} <= set(blobs)
    local_run(spark, small_image, random_bundle_dir, tmp_path / "local", strips=0)
    lake = tmp_path / "lake"
    lake.mkdir()
    for file in ("windows.parquet", "detections.json", "manifest.json"):
        (lake / file).write_bytes(blobs[f"run/{file}"])
    assert_same_outputs(lake, tmp_path / "local")


def completed_tasks(ui_port: int) -> int:
    """Tasks completed so far, from the running application's UI; 0 while the UI is not up yet."""
    base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    try:
        (app,) = json.load(urllib.request.urlopen(base, timeout=2))
        jobs = json.load(urllib.request.urlopen(f"{base}/{app['id']}/jobs", timeout=2))
    except (OSError, ValueError):  # not up yet, or busy: poll again
        return 0
    return sum(job["numCompletedTasks"] for job in jobs)


def events(folder) -> list[dict]:
    """The events of the one application that logged to ``folder`` (JSON lines; Spark 4 rolls them into a folder)."""
    (path,) = [p for p in folder.iterdir() if not p.name.endswith(".inprogress")]
    files = sorted(p for p in path.iterdir() if p.name.startswith("events_")) if path.is_dir() else [path]
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def test_killing_a_worker_mid_job_changes_nothing(standalone, spark, tmp_path, resnet20_bundle):
    port, run_dir = standalone
    image = write_noise_png(tmp_path / "big.png", 1280, 1024, seed=4)
    (ui_port,) = free_ports(1)
    event_log = tmp_path / "events"
    event_log.mkdir()
    proc = submit(f"spark://127.0.0.1:{port}", image, resnet20_bundle, tmp_path / "disturbed", "--strips", "16",
                  ui_port=ui_port, event_log=event_log)
    try:
        deadline = time.monotonic() + 180
        while completed_tasks(ui_port) < 2:
            assert proc.poll() is None, "the job ended before a worker could be killed"
            assert time.monotonic() < deadline, "no task completed in time"
            time.sleep(0.2)
        os.killpg(pids(run_dir)["worker-1"], signal.SIGKILL)  # the worker, its executor and Python workers
        finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster(*up_args(2, port, 0), run_dir=run_dir)  # bring the worker back for later tests
    # The kill hit the job: an executor was lost with tasks on it, Spark ran them again, the job succeeded.
    logged = events(event_log)
    assert any(e["Event"] == "SparkListenerExecutorRemoved" for e in logged)
    lost = [e for e in logged if e["Event"] == "SparkListenerTaskEnd"
            and e["Task End Reason"]["Reason"] != "Success"]
    assert lost, "no task was lost: the worker died after the job's tasks had finished"
    ends = [e for e in logged if e["Event"] == "SparkListenerJobEnd"]
    assert ends and all(e["Job Result"]["Result"] == "JobSucceeded" for e in ends)
    local_run(spark, image, resnet20_bundle, tmp_path / "undisturbed", strips=4)
    assert_same_outputs(tmp_path / "disturbed", tmp_path / "undisturbed")
