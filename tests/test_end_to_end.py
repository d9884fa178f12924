"""A small Mona Lisa collage from the CIFAR-10 test set, scored on Spark with the default
model, then evaluated: the whole demo at a size the test suite can afford."""
from __future__ import annotations

import json
import os

import pytest

from collage import CollageParams
from collage.make import make_collage
from evaluation.runs import evaluate_run
from scoring.params import DEFAULT_MODEL, ScoreParams
from scoring.pipeline import prepare, run
from tests.conftest import DATA, needs_cifar, needs_mona_lisa

pytestmark = [pytest.mark.slow, pytest.mark.spark, needs_cifar, needs_mona_lisa]


def test_collage_score_evaluate(spark, tmp_path):
    collage_dir = tmp_path / "collage"
    make_collage(str(collage_dir), CollageParams(width=800, seed=3), target=os.path.join(DATA, "mona_lisa.jpg"))
    run_dir = tmp_path / "run"
    params = ScoreParams(image=str(collage_dir / "collage.png"), out=str(run_dir), model=DEFAULT_MODEL, keep=0.0,
                         threshold={"*": 0.5}, quiet=True)
    manifest = run(prepare(params), spark)
    result = evaluate_run(str(run_dir), str(collage_dir / "ground_truth.json"))

    # Written beside the committed run, never into it.
    evaluated = tmp_path / "run-evaluation"
    assert os.path.exists(evaluated / "evaluation.json") and os.path.exists(evaluated / "pr_curve.png")
    assert not os.path.exists(run_dir / "evaluation.json") and not os.path.exists(run_dir / "pr_curve.png")
    assert json.load(open(evaluated / "evaluation.json"))["classes"] == result["classes"]
    car = result["classes"]["car"]
    assert car["truths"] > 20 and car["detections"] == manifest["counts"]["boxes_per_class"]["car"]
    assert car["ap50"] > 0.2  # a trained model finds cars; random weights score about 0
    assert result["windows"]["windows"] == manifest["counts"]["windows_scored"]
    assert result["windows"]["accuracy"] > 0.8
