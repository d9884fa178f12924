"""The built wheel: what it carries, and that it runs outside the checkout on current packages.

The wheel is built from the checkout with pip; installed with the current-packages line's
constraints (numpy 2, no MXNet) into a fresh venv, it scores a picture in a folder far from
the checkout at README's defaults, and gives the same windows as the checkout's own run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.project import ROOT
from tests.conftest import write_noise_png

REPO = Path(ROOT)
CURRENT_CONSTRAINTS = REPO / "constraints-current.txt"
#: What the default model and Spark's logging need in the wheel (setup.py copies them in).
PACKAGED = ("core/packaged/models/default/model.json", "core/packaged/models/default/model.onnx",
            "core/packaged/conf/log4j2.properties", "core/packaged/openseadragon/openseadragon.min.js",
            "viewer/page.html")


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


def _clean_env(**extra) -> dict:
    """No trace of the checkout: no PYTHONPATH, SPARK_CONF_DIR or SPARK_HOME, loopback only."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SPARK_CONF_DIR", "SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON",
                        "TILESCAN_DATA")}
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", folder,
                  REPO], env=_clean_env(), cwd=folder, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    return next(folder.glob("tilescan-*.whl"))


def test_the_wheel_carries_the_default_model_and_logging_and_nothing_from_shared(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for name in PACKAGED:
        assert name in names
    shipped = {n.split("/", 1)[0] for n in names if not n.startswith("tilescan-")}
    assert "models" not in shipped and "conf" not in shipped and "tests" not in shipped
    # Nothing of ../shared (CIFAR-10, the Mona Lisa, collages cut from them) nor the other models.
    assert not [n for n in names if any(part in n.lower() for part in ("cifar", "mona", "collage.png", "classifier/"))]
    assert sum(zipfile.ZipFile(wheel).getinfo(n).file_size for n in names) < 20 << 20


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_with_numpy_2_scores_outside_the_checkout_as_the_checkout_does(
        wheel, tmp_path, spark):
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare, run

    if not CURRENT_CONSTRAINTS.exists():
        pytest.fail(f"{CURRENT_CONSTRAINTS} is missing")
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", venv], timeout=120).returncode == 0
    python = venv / "bin" / "python"
    installed = _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c",
                      CURRENT_CONSTRAINTS, f"{wheel}[local]"], env=_clean_env(), cwd=tmp_path, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    versions = _run([python, "-c", "import numpy, importlib.util as u; print(numpy.__version__, u.find_spec('mxnet'))"],
                    env=_clean_env(), cwd=tmp_path)
    assert versions.stdout.split() == [versions.stdout.split()[0], "None"] and versions.stdout.startswith("2.")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    picture = write_noise_png(elsewhere / "noise.png", 160, 128, seed=7)
    scored = _run([venv / "bin" / "tilescan-score", "--image", picture, "--out", elsewhere / "run", "--keep", "0",
                   "--quiet"], env=_clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"),
                  cwd=elsewhere, timeout=300)
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-3000:]
    assert "INFO" not in scored.stderr  # Spark's quiet logging travelled in the wheel
    assert (elsewhere / "run" / "_SUCCESS").exists()
    # The viewer, with the wheel's own OpenSeadragon copied beside its tiles.
    [folder] = [p for p in (elsewhere / "run").iterdir() if p.name.startswith("viewer-")]
    assert (elsewhere / "run" / "viewer.html").exists() and (folder / "openseadragon.min.js").stat().st_size > 100_000

    checkout = tmp_path / "checkout-run"
    run(prepare(ScoreParams(image=picture, out=str(checkout), keep=0.0, quiet=True)), spark)
    theirs = pq.read_table(elsewhere / "run" / "windows.parquet").sort_by([("y", "ascending"), ("x", "ascending")])
    ours = pq.read_table(checkout / "windows.parquet").sort_by([("y", "ascending"), ("x", "ascending")])
    assert theirs.num_rows == ours.num_rows > 0
    for column in ours.column_names:
        a, b = ours.column(column).to_pylist(), theirs.column(column).to_pylist()
        if isinstance(a[0], float):
            assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, column
        else:
            assert a == b, column
