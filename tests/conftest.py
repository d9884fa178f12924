"""Shared fixtures: a random-weights bundle, small pictures, and a Spark session on loopback."""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tilesets import data_root  # noqa: E402

pytest_plugins = ["tests.azurite", "tests.browser"]
#: Python's start-up file for the Spark workers of one test (tests/test_engine_checks.py), never a test module.
collect_ignore = ["executor_faults", "bundles"]

DATA = data_root()
HAVE_CIFAR = os.path.isdir(os.path.join(DATA, "cifar10"))
HAVE_MONA_LISA = os.path.isfile(os.path.join(DATA, "mona_lisa.jpg"))
needs_cifar = pytest.mark.skipif(not HAVE_CIFAR, reason=f"CIFAR-10 not found under {DATA} (set TILESCAN_DATA)")
#: MXNet is the train extra: the current-packages test line (numpy 2) runs without it.
HAVE_MXNET = importlib.util.find_spec("mxnet") is not None
needs_mxnet = pytest.mark.skipif(not HAVE_MXNET, reason="MXNet (the train extra) is not installed on this test line")
needs_mona_lisa = pytest.mark.skipif(not HAVE_MONA_LISA, reason=f"mona_lisa.jpg not found under {DATA}")


#: Fixtures that start Spark: a test using any of them is Spark-facing (``-m spark``, which
#: ``make test`` runs again on the Spark 3.5 line).
SPARK_FIXTURES = {"spark", "spark_for", "standalone"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SPARK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.spark)


#: Small random-weights bundles the training code exported (``training.export.random_bundle``
#: with these arguments), committed so that the tests run without MXNet; test_test_bundles.py
#: checks, where MXNet is installed, that the training code still makes exactly these.
TEST_BUNDLES = {"random-resnet8": {"depth": 8, "width": 4, "seed": 3},
                "random-resnet8-boxes": {"depth": 8, "width": 4, "seed": 5, "boxes": True},
                "random-validnet4": {"width": 4, "seed": 7, "dense": True}}


def _test_bundle(tmp_path_factory, name: str) -> str:
    folder = tmp_path_factory.mktemp(name) / "bundle"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "bundles", name), folder)
    return str(folder)


@pytest.fixture(scope="session")
def random_bundle_dir(tmp_path_factory) -> str:
    """A small ResNet-8 bundle with random weights (a copy: tests may change it)."""
    return _test_bundle(tmp_path_factory, "random-resnet8")


@pytest.fixture(scope="session")
def dense_bundle_dir(tmp_path_factory) -> str:
    """The padding-free detector (training.valid_net) at widths 4, 8, 16, random weights: dense
    at stride 4."""
    return _test_bundle(tmp_path_factory, "random-validnet4")


@pytest.fixture(scope="session")
def random_bundle(random_bundle_dir):
    from core.bundle import load_bundle

    return load_bundle(random_bundle_dir)


@pytest.fixture(scope="session")
def detector_bundle_dir(tmp_path_factory) -> str:
    """The same small ResNet-8 with the box head: probabilities and box deltas, random weights."""
    return _test_bundle(tmp_path_factory, "random-resnet8-boxes")


@pytest.fixture(scope="session")
def detector_bundle(detector_bundle_dir):
    from core.bundle import load_bundle

    return load_bundle(detector_bundle_dir)


def write_noise_png(path, width: int, height: int, seed: int = 0) -> str:
    """Smooth colour noise: windows differ, so ordering mistakes show up in scores."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    noise = rng.integers(-20, 21, (height, width, 3))
    pixels = np.clip(np.asarray(image).astype(int) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="session")
def small_image(tmp_path_factory) -> str:
    """A 250 x 173 picture: edges not on the stride, so edge alignment is exercised."""
    return write_noise_png(tmp_path_factory.mktemp("img") / "small.png", 250, 173, seed=1)


@pytest.fixture
def no_spark(monkeypatch):
    """Bad input must be found before Spark starts: starting it fails the test."""
    import scoring.job

    def refuse(*args, **kwargs):
        raise AssertionError("Spark was started for a run that should have been refused")

    monkeypatch.setattr(scoring.job, "spark_session", refuse)


_active = {}


def spark_session(master: str = "local[2]"):
    """A Spark session for ``master``, reusing the running one when the master matches."""
    from pyspark.sql import SparkSession

    current = _active.get("spark")
    if current is not None and current.sparkContext.master == master:
        return current
    if current is not None:
        current.stop()
    spark = (SparkSession.builder.master(master).appName("tilescan-tests")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    _active["spark"] = spark
    return spark


class _LocalSpark:
    """Stands for the local[2] session, starting it again if a test switched masters
    (``spark_for``), so a session-scoped fixture never hands out a stopped session."""

    def __getattr__(self, name):
        return getattr(spark_session("local[2]"), name)


@pytest.fixture(scope="session")
def spark():
    yield _LocalSpark()
    current = _active.pop("spark", None)
    if current is not None:
        current.stop()


@pytest.fixture
def spark_for():
    """Call with a master URL to get a session on it (stops a session on another master)."""
    return spark_session
