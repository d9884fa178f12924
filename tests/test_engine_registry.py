"""The engine registry other code extends, engines' options and devices, and the bounded per-worker cache."""
from __future__ import annotations

import numpy as np
import pytest

import engines
from core.bundle import load_bundle
from core.errors import TilescanError
from engines import Engine, create_engine, engine_class, engine_module, register_engine
from engines.cache import MAX_ENGINES, cached_engine, clear
from engines.onnx_engine import OnnxRuntimeEngine
from tests.helpers import copy_bundle


@pytest.fixture
def registry(monkeypatch):
    """The registry, restored after the test."""
    monkeypatch.setattr(engines, "ENGINES", dict(engines.ENGINES))
    return engines.ENGINES


def test_a_registered_subclass_is_an_engine_like_the_built_in_ones(registry, random_bundle):
    @register_engine("onnxruntime-extended")
    class Extended(OnnxRuntimeEngine):
        """The built-in engine with fewer graph rewrites, as a user would add one."""

        def configure(self, options):
            super().configure(options)
            options.add_session_config_entry("session.disable_prepacking", "1")

    assert Extended.name == "onnxruntime-extended" and registry["onnxruntime-extended"] is Extended
    assert engine_class("onnxruntime-extended") is Extended
    assert engine_module("onnxruntime-extended") == __name__
    windows = np.random.default_rng(0).integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    mine, theirs = create_engine(random_bundle, "onnxruntime-extended"), create_engine(random_bundle, "onnxruntime")
    assert mine.numerics.status == "passed"
    assert np.abs(mine.predict(windows) - theirs.predict(windows)).max() < 1e-5


def test_the_registry_refuses_what_is_not_an_engine_or_a_name_taken(registry):
    with pytest.raises(TypeError, match="takes an Engine subclass"):
        register_engine("not-an-engine")(object)
    with pytest.raises(ValueError, match="'onnxruntime' is registered already"):
        register_engine("onnxruntime")(type("Other", (Engine,), {}))
    with pytest.raises(ValueError, match="non-empty string"):
        register_engine("")
    with pytest.raises(TilescanError, match="unknown engine 'nope'; choose one of: onnxruntime, mxnet"):
        engine_class("nope")


def test_engines_refuse_options_and_devices_they_do_not_take(random_bundle):
    with pytest.raises(TypeError, match="engine onnxruntime takes no option 'providers'"):
        create_engine(random_bundle, "onnxruntime", providers=["CUDAExecutionProvider"])
    with pytest.raises(TilescanError, match="engine onnxruntime runs on cpu, not 'cuda:0'"):
        create_engine(random_bundle, "onnxruntime", device="cuda:0")
    with pytest.raises(ValueError, match="`optimization` must be one of"):
        create_engine(random_bundle, "onnxruntime", optimization="fast")
    engine = create_engine(random_bundle, "onnxruntime", optimization="basic", threads=2)
    assert (engine.threads, engine.device) == (2, "cpu")
    assert engine_class("onnxruntime").task_resources(2) == {"cpus": 2}


def test_the_worker_cache_keeps_the_most_recent_engines_per_device(random_bundle_dir, tmp_path):
    clear()
    bundles = [load_bundle(copy_bundle(random_bundle_dir, tmp_path / f"b{k}")) for k in range(MAX_ENGINES + 1)]
    loads = []

    def loader(bundle):
        return lambda: loads.append(bundle.sha256) or bundle

    first = cached_engine(bundles[0].sha256, loader(bundles[0]), "onnxruntime", 1)
    assert cached_engine(bundles[0].sha256, loader(bundles[0]), "onnxruntime", 1) is first
    for bundle in bundles[1:]:
        cached_engine(bundle.sha256, loader(bundle), "onnxruntime", 1)
    assert len(loads) == MAX_ENGINES + 1
    cached_engine(bundles[-1].sha256, loader(bundles[-1]), "onnxruntime", 1)  # kept: no load
    assert len(loads) == MAX_ENGINES + 1
    assert cached_engine(bundles[0].sha256, loader(bundles[0]), "onnxruntime", 1) is not first  # evicted, loaded again
    assert loads[-1] == bundles[0].sha256
    with pytest.raises(TilescanError, match="runs on cpu"):  # the device is part of the key
        cached_engine(bundles[0].sha256, loader(bundles[0]), "onnxruntime", 1, "cuda:0")
    clear()
