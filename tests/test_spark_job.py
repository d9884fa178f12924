"""The Spark job: exact whatever the partitioning, and the outputs of a run."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from scoring.params import TASKS_PER_CORE, ScoreParams
from scoring.pipeline import prepare, run
from tests.conftest import needs_mxnet
from tests.reference import assert_same_scores, reference_scores, table_scores

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def score(spark, image, model, out, **kwargs):
    params = ScoreParams(image=image, out=str(out), model=model, quiet=True, **kwargs)
    return run(prepare(params), spark)


@pytest.fixture(scope="module")
def reference(small_image, random_bundle):
    return reference_scores(small_image, random_bundle)


@pytest.mark.parametrize("master, strips", [("local[2]", 1), ("local[2]", 7), ("local[1]", 7), ("local[1]", 0)])
def test_scores_do_not_depend_on_partitioning(spark_for, master, strips, tmp_path, small_image, random_bundle_dir,
                                              random_bundle, reference):
    spark = spark_for(master)
    manifest = score(spark, small_image, random_bundle_dir, tmp_path / "run", strips=strips, keep=0.0)
    table = pq.read_table(tmp_path / "run" / "windows.parquet")
    assert manifest["counts"]["windows_scored"] == len(reference) == table.num_rows
    assert_same_scores(table_scores(table, random_bundle.spec.classes), reference)
    assert manifest["parameters"]["tasks"] == (strips or TASKS_PER_CORE * spark.sparkContext.defaultParallelism)
    assert sum(manifest["counts"]["strip_windows"]) == len(reference)  # the bands partition the windows


@needs_mxnet
def test_mxnet_engine_on_spark_matches_reference(spark, tmp_path, small_image, random_bundle_dir, random_bundle,
                                                 reference):
    score(spark, small_image, random_bundle_dir, tmp_path / "run", strips=3, keep=0.0, engine="mxnet")
    table = pq.read_table(tmp_path / "run" / "windows.parquet")
    assert_same_scores(table_scores(table, random_bundle.spec.classes), reference, atol=1e-4)


def test_run_outputs(spark, tmp_path, small_image, random_bundle_dir):
    out = tmp_path / "run"
    manifest = score(spark, small_image, random_bundle_dir, out, strips=4,
                     threshold={"*": 0.34, "boat": 0.36}, keep=0.34, merge="nms")
    assert sorted(os.listdir(out)) == ["_SUCCESS", "_tilescan", "detections.geojson", "detections.json",
                                       "manifest.json", "overlay.png", manifest["viewer"]["folder"], "viewer.html",
                                       "windows.parquet"]
    table = pq.read_table(out / "windows.parquet")
    assert table.column_names == ["x", "y", "width", "height", "strip", "label", "score", "p_car", "p_boat",
                                  "p_background"]
    best_fg = [max(c, b) for c, b in zip(table.column("p_car").to_pylist(), table.column("p_boat").to_pylist())]
    assert min(best_fg) >= 0.34  # --keep filters rows

    coco = json.load(open(out / "detections.json"))
    assert coco["images"] == [{"id": 1, "file_name": "small.png", "width": 250, "height": 173}]
    assert [c["name"] for c in coco["categories"]] == ["car", "boat"]
    for ann in coco["annotations"]:
        assert set(ann) >= {"id", "image_id", "category_id", "bbox", "area", "score", "iscrowd"}
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 250 and y + h <= 173
        assert ann["score"] >= (0.34 if ann["category_id"] == 1 else 0.36)
    assert len(coco["annotations"]) == manifest["counts"]["boxes"]

    saved = json.load(open(out / "manifest.json"))
    assert saved["input"]["width"] == 250 and saved["model"]["sha256"]
    assert saved["parameters"]["thresholds"] == {"car": 0.34, "boat": 0.36}
    assert saved["counts"]["windows_scored"] == 15 * 10  # 14 + 1 aligned columns, 9 + 1 rows
    assert {"read_s", "spark_job_s", "merge_s", "write_s"} <= set(saved["timings_s"])
    assert saved["versions"]["onnxruntime"]

    overlay = np.asarray(Image.open(out / "overlay.png").convert("RGB"))
    original = np.asarray(Image.open(small_image).convert("RGB"))
    assert overlay.shape == original.shape
    changed = overlay[(overlay != original).any(axis=2)]
    assert {tuple(c) for c in changed} <= {(255, 0, 0), (0, 200, 0)}  # only box outlines, in class colours
    assert (len(changed) > 0) == bool(coco["annotations"])


def test_overwrite_replaces_a_finished_run(spark, tmp_path, small_image, random_bundle_dir):
    out = tmp_path / "run"
    first = score(spark, small_image, random_bundle_dir, out, strips=2)
    second = score(spark, small_image, random_bundle_dir, out, strips=2, overwrite=True, keep=0.0)
    assert second["counts"]["windows_kept"] == 150 and first["started"] != second["started"]
    assert not [n for n in os.listdir(out) if n.startswith("_temporary")]


def test_failed_run_leaves_nothing(spark, tmp_path, small_image, random_bundle_dir, monkeypatch):
    import scoring.pipeline as pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "manifest_bytes", broken)  # the driver's last step, after the job
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        score(spark, small_image, random_bundle_dir, out, strips=2)
    assert not out.exists()  # the files the executors staged are gone, and the folder the run made


@needs_mxnet
def test_runs_of_one_session_broadcast_a_bundle_once_and_check_its_engine_once(spark, tmp_path, small_image,
                                                                               random_bundle_dir, monkeypatch):
    import engines.preflight as preflight
    import scoring.job as job

    sent, loaded = [], []
    broadcast = type(spark.sparkContext).broadcast
    monkeypatch.setattr(type(spark.sparkContext), "broadcast", lambda sc, value: sent.append(value) or
                        broadcast(sc, value))
    create = preflight.create_engine
    monkeypatch.setattr(preflight, "create_engine", lambda *a, **k: loaded.append(a[1]) or create(*a, **k))
    monkeypatch.setattr(job, "_application", {})
    monkeypatch.setattr(preflight, "_passed", {})
    first = score(spark, small_image, random_bundle_dir, tmp_path / "a", strips=2, keep=0.0)
    second = score(spark, small_image, random_bundle_dir, tmp_path / "b", strips=2, keep=0.0)
    assert len(sent) == 1 and loaded == [first["parameters"]["engine"]]
    assert first["counts"] == second["counts"]
    score(spark, small_image, random_bundle_dir, tmp_path / "c", strips=2, keep=0.0, engine="mxnet")
    assert len(sent) == 2 and loaded[1:] == ["mxnet"]  # another engine's files: sent and checked anew
