"""The random-weights bundles the tests use are what the training code exports today.

They are committed (tests/bundles/) so that the tests run where MXNet cannot be installed
(numpy 2, Python 3.12); here, with MXNet, they are made again and must come out the same.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import TEST_BUNDLES


@pytest.mark.parametrize("name", sorted(TEST_BUNDLES))
def test_the_committed_test_bundle_is_what_the_training_code_exports(name, tmp_path):
    pytest.importorskip("mxnet", reason="the training code's export needs MXNet (the train extra)")
    from core.bundle import load_bundle
    from engines import create_engine
    from training.export import random_bundle

    made = str(tmp_path / name)
    random_bundle(made, **TEST_BUNDLES[name])
    committed = os.path.join(os.path.dirname(__file__), "bundles", name)
    with open(os.path.join(made, "model.json")) as fh, open(os.path.join(committed, "model.json")) as kept:
        made_doc, kept_doc = json.load(fh), json.load(kept)
    # Gluon names a process's networks in turn (resnet0_, resnet1_...), so the graphs' bytes
    # differ with what the process made before: the same contract, golden batch and numbers.
    files = {"files": None}
    assert {**made_doc, **files} == {**kept_doc, **files}
    assert made_doc["files"]["golden"] == kept_doc["files"]["golden"]
    assert sorted(os.listdir(made)) == sorted(os.listdir(committed))
    windows = np.random.default_rng(1).integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    ours, theirs = (create_engine(load_bundle(folder), "onnxruntime").predict(windows) for folder in (made, committed))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
