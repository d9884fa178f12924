"""COCO box metrics and the window confusion matrix on cases with known answers."""
from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from app import evaluate as evaluate_app
from collage import Collage, CollageParams, Placements, ground_truth, owner_map
from evaluation.metrics import box_metrics, window_confusion
from evaluation.runs import evaluate_run
from tilesets import FOREGROUND_CLASSES

CATEGORIES = [{"id": 1, "name": "car"}, {"id": 2, "name": "boat"}]
SIZE = 256
# Three cars and two boats, 32x32, apart from one another.
TRUTH_BOXES = [(1, 10, 10), (1, 100, 10), (1, 10, 100), (2, 150, 150), (2, 200, 30)]


def truth_doc(boxes=TRUTH_BOXES, crowd=()) -> dict:
    annotations = [{"id": k + 1, "image_id": 1, "category_id": c, "bbox": [x, y, 32, 32], "area": 1024,
                    "iscrowd": int(k in crowd), "ignore": int(k in crowd)} for k, (c, x, y) in enumerate(boxes)]
    return {"images": [{"id": 1, "file_name": "collage.png", "width": SIZE, "height": SIZE}],
            "categories": CATEGORIES, "annotations": annotations}


def detections_doc(boxes, scores=None) -> dict:
    scores = scores or [0.9 - 0.01 * k for k in range(len(boxes))]
    annotations = [{"id": k + 1, "image_id": 1, "category_id": c, "bbox": [x, y, 32, 32], "area": 1024,
                    "score": s, "iscrowd": 0} for k, ((c, x, y), s) in enumerate(zip(boxes, scores))]
    return {"images": [{"id": 1, "file_name": "collage.png", "width": SIZE, "height": SIZE}],
            "categories": CATEGORIES, "annotations": annotations}


def shifted(dx: int):
    return [(c, x + dx, y) for c, x, y in TRUTH_BOXES]


def test_perfect_detections_score_one():
    result = box_metrics(truth_doc(), detections_doc(TRUTH_BOXES))
    for name in ("car", "boat"):
        c = result["classes"][name]
        assert c["ap50"] == pytest.approx(1) and c["ap"] == pytest.approx(1)
        assert c["precision"] == 1 and c["recall"] == 1
    assert result["classes"]["car"]["truths"] == 3 and result["classes"]["boat"]["truths"] == 2
    assert result["mean"]["ap50"] == pytest.approx(1)


def test_a_shift_below_half_iou_scores_zero():
    result = box_metrics(truth_doc(), detections_doc(shifted(16)))  # IoU 16/48 = 1/3
    for c in result["classes"].values():
        assert c["ap50"] == 0 and c["ap"] == 0 and c["precision"] == 0 and c["recall"] == 0


def test_a_small_shift_keeps_ap50_and_lowers_ap():
    result = box_metrics(truth_doc(), detections_doc(shifted(2)))  # IoU 30/34 = 0.88: 8 of 10 thresholds
    for c in result["classes"].values():
        assert c["ap50"] == pytest.approx(1) and c["ap"] == pytest.approx(0.8)


def test_no_detections_score_zero():
    result = box_metrics(truth_doc(), detections_doc([]))
    for c in result["classes"].values():
        assert c["ap50"] == 0 and c["ap"] == 0 and c["recall"] == 0 and c["precision"] is None
        assert c["detections"] == 0


def test_ignored_truths_are_no_misses_and_no_false_positives():
    truth = truth_doc(crowd=(1,))  # the car at (100, 10) is mostly hidden
    found = box_metrics(truth, detections_doc([TRUTH_BOXES[0], TRUTH_BOXES[2]]))["classes"]["car"]
    assert found["ap50"] == pytest.approx(1) and found["recall"] == 1 and found["truths"] == 2
    assert found["ignored_truths"] == 1
    with_hidden = box_metrics(truth, detections_doc(TRUTH_BOXES[:3]))["classes"]["car"]
    assert with_hidden["precision"] == 1 and with_hidden["false_positives"] == 0


def test_a_false_positive_ranked_last_lowers_precision_only():
    boxes = TRUTH_BOXES[:3] + [(1, 200, 200)]
    car = box_metrics(truth_doc(), detections_doc(boxes, [0.9, 0.8, 0.7, 0.1]))["classes"]["car"]
    assert car["ap50"] == pytest.approx(1) and car["precision"] == 0.75 and car["recall"] == 1


def test_class_without_truths_has_no_ap():
    result = box_metrics(truth_doc(TRUTH_BOXES[:3]), detections_doc(TRUTH_BOXES[:3]))
    assert result["classes"]["boat"]["ap50"] is None and result["classes"]["boat"]["recall"] is None
    assert result["mean"]["ap50"] == pytest.approx(1)


def test_same_ap_as_pycocotools_on_one_image():
    """Splitting the picture into groups of overlapping boxes must not change the answer."""
    rng = np.random.default_rng(5)
    truths = [(int(rng.integers(1, 3)), int(x), int(y)) for x, y in rng.integers(0, SIZE - 32, (40, 2))]
    found = [(c, x + int(rng.integers(-8, 9)), y + int(rng.integers(-8, 9))) for c, x, y in truths[:30]]
    found += [(int(rng.integers(1, 3)), int(x), int(y)) for x, y in rng.integers(0, SIZE - 32, (15, 2))]
    found = [(c, min(max(x, 0), SIZE - 32), min(max(y, 0), SIZE - 32)) for c, x, y in found]
    truth, detections = truth_doc(truths, crowd=(3, 7)), detections_doc(found, rng.random(len(found)).tolist())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        coco = COCOeval(gt, gt.loadRes(detections["annotations"]), "bbox")
        coco.params.maxDets = [100]
        coco.evaluate()
        coco.accumulate()
    result = box_metrics(truth, detections)
    for k, name in enumerate(["car", "boat"]):
        precision = coco.eval["precision"][:, :, k, 0, 0]
        assert result["classes"][name]["ap"] == pytest.approx(precision[precision > -1].mean())
        assert result["classes"][name]["ap50"] == pytest.approx(precision[0][precision[0] > -1].mean())


@pytest.mark.parametrize("change, match", [
    ({"categories": [{"id": 1, "name": "truck"}]}, "truck"),
    ({"images": [{"id": 1, "width": 100, "height": 100}]}, "100x100"),
    ({"annotations": [{"category_id": 1, "bbox": [0, 0, 0, 5], "score": 1}]}, "empty"),
    ({"annotations": [{"category_id": 1, "bbox": [0, 0, 5, 5]}]}, "score"),
])
def test_mismatched_or_malformed_detections(change, match):
    with pytest.raises(ValueError, match=match):
        box_metrics(truth_doc(), {**detections_doc(TRUTH_BOXES), **change})


@pytest.mark.parametrize("change, match", [
    ({"category_id": 99}, r"annotation 0 has category_id 99, not one of the categories \[1, 2\]"),
    ({"category_id": "car"}, "annotation 0 needs an integer `category_id`"),
    ({"iscrowd": 2}, "annotation 0 has iscrowd 2, not 0 or 1"),
])
def test_malformed_truth_annotations_are_refused(change, match):
    truth = truth_doc()
    truth["annotations"][0].update(change)
    with pytest.raises(ValueError, match=match):
        box_metrics(truth, detections_doc(TRUTH_BOXES))


def test_truths_without_iscrowd_count_as_not_crowd():
    # Other annotation tools leave iscrowd out; pycocotools raised KeyError on it.
    truth = truth_doc()
    for annotation in truth["annotations"]:
        del annotation["iscrowd"], annotation["ignore"]
    result = box_metrics(truth, detections_doc(TRUTH_BOXES[:3]))
    assert result["classes"]["car"]["ap50"] == 1 and result["classes"]["car"]["truths"] == 3
    assert result["classes"]["boat"]["truths"] == 2 and result["classes"]["boat"]["recall"] == 0


def quadrant_truth() -> dict:
    """A 64x64 collage of four tiles: car, boat / background, car; a fifth car on top in the middle."""
    placements = Placements(x=np.array([0, 32, 0, 32, 16]), y=np.array([0, 0, 32, 32, 16]),
                            tile=np.arange(5), label=np.array(["car", "boat", "background", "car", "car"]),
                            source=np.array(list("abcde")))
    params = CollageParams(width=64, height=64)
    collage = Collage(image=np.zeros((64, 64, 3), np.uint8), owner=owner_map(placements, 64, 64),
                      placements=placements, params=params)
    return json.loads(json.dumps(ground_truth(collage, FOREGROUND_CLASSES)))


def test_window_confusion_on_quadrants():
    windows = np.array([[0, 0, 16, 16], [48, 0, 64, 16], [0, 48, 16, 64], [48, 48, 64, 64], [16, 16, 48, 48],
                        [40, 0, 64, 32]])
    predicted = ["car", "car", "background", "boat", "car", "boat"]
    result = window_confusion(quadrant_truth(), windows, predicted)
    assert result["classes"] == ["car", "boat", "background"]
    # true: car, boat, background, car, car (middle tile), boat
    assert result["matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["recall"]["boat"] == 0.5 and result["precision"]["car"] == pytest.approx(2 / 3)


def test_window_confusion_rejects_unknown_labels():
    with pytest.raises(ValueError, match="truck"):
        window_confusion(quadrant_truth(), np.array([[0, 0, 16, 16]]), ["truck"])


def write_run(folder, truth: dict, boxes, windows=None, labels=None, scored=None):
    folder.mkdir()
    detections = detections_doc(boxes)
    detections["images"] = [{**truth["images"][0]}]
    (folder / "detections.json").write_text(json.dumps(detections))
    if windows is not None:
        classes = ["car", "boat", "background"]
        table = pa.table({"x": windows[:, 0], "y": windows[:, 1], "width": windows[:, 2] - windows[:, 0],
                          "height": windows[:, 3] - windows[:, 1],
                          "label": pa.DictionaryArray.from_arrays(pa.array([classes.index(c) for c in labels],
                                                                           pa.int32()), pa.array(classes))})
        pq.write_table(table, str(folder / "windows.parquet"))
    if scored is not None:
        (folder / "manifest.json").write_text(json.dumps({"counts": {"windows_scored": scored}}))
    return str(folder)


def test_evaluate_run_writes_evaluation_and_curve(tmp_path):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    windows = np.array([[0, 0, 32, 32], [32, 0, 64, 32], [0, 32, 32, 64], [32, 32, 64, 64]])
    run = write_run(tmp_path / "run", truth, [(1, 16, 16)], windows, ["car", "boat", "car", "car"], scored=4)
    result = evaluate_run(run, str(tmp_path / "truth.json"))
    written = json.loads((tmp_path / "run-evaluation" / "evaluation.json").read_text())  # beside the run
    assert written["classes"] == result["classes"]
    assert (tmp_path / "run-evaluation" / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path / "run")) == ["detections.json", "manifest.json", "windows.parquet"]
    assert written["windows"]["windows"] == 4 and written["windows"]["accuracy"] == pytest.approx(0.75)
    assert len(written["pr_curve"]["recall"]) == 101


def test_partial_windows_give_no_confusion_matrix(tmp_path):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    run = write_run(tmp_path / "run", truth, [], np.array([[0, 0, 32, 32]]), ["car"], scored=9)
    result = evaluate_run(run, str(tmp_path / "truth.json"))
    assert "1 of the 9" in result["windows"]["skipped"]


def test_a_plain_coco_truth_gives_box_metrics_without_a_confusion_matrix(tmp_path):
    truth = quadrant_truth()
    del truth["collage"]  # as from an annotation tool: no tiles to give a window its class
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    windows = np.array([[0, 0, 32, 32]])
    run = write_run(tmp_path / "run", truth, [(1, 16, 16)], windows, ["car"], scored=1)
    result = evaluate_run(run, str(tmp_path / "truth.json"))
    assert result["windows"] == {"skipped": "the ground truth is not a collage's"}
    assert result["classes"]["car"]["true_positives"] == 1


@pytest.mark.parametrize("truth, match", [
    ("folder", r"ground truth .*truth is a folder, not a JSON file$"),
    ("[1, 2]", r"ground truth .*truth must hold a JSON object, got a list$"),
])
def test_a_truth_that_is_no_json_object_exits_2(tmp_path, capsys, truth, match):
    run = write_run(tmp_path / "run", quadrant_truth(), [(1, 16, 16)])
    if truth == "folder":
        (tmp_path / "truth").mkdir()
    else:
        (tmp_path / "truth").write_text(truth)
    assert evaluate_app.main(["--run", run, "--truth", str(tmp_path / "truth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert re.search(match, err)


@pytest.mark.parametrize("windows, match", [
    (b"garbage", r"windows.parquet cannot be read as a run's windows \(ArrowInvalid: .*footer"),
    (pa.table({"x": [1]}), r"windows.parquet cannot be read as a run's windows \(ArrowInvalid: No match .*y"),
])
def test_damaged_windows_exit_2_naming_the_file(tmp_path, capsys, windows, match):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    run = write_run(tmp_path / "run", truth, [(1, 16, 16)])
    if isinstance(windows, bytes):
        (tmp_path / "run" / "windows.parquet").write_bytes(windows)
    else:
        pq.write_table(windows, str(tmp_path / "run" / "windows.parquet"))
    assert evaluate_app.main(["--run", run, "--truth", str(tmp_path / "truth.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(match, err)


def test_a_manifest_without_counts_still_evaluates_the_windows(tmp_path):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    run = write_run(tmp_path / "run", truth, [(1, 16, 16)], np.array([[0, 0, 32, 32]]), ["car"])
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"counts": 5}))
    assert evaluate_run(run, str(tmp_path / "truth.json"))["windows"]["windows"] == 1


def test_command_prints_a_summary(tmp_path, capsys):
    # Three cars and a boat, all at least half visible; one box, exactly on the middle car.
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    run = write_run(tmp_path / "run", truth, [(1, 16, 16)])
    assert evaluate_app.main(["--run", run, "--truth", str(tmp_path / "truth.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    # COCO's 101-point interpolation: precision 1 up to recall 1/3, so AP = 34/101 at every IoU.
    car_ap = f"{34 / 101:.3f}"
    assert lines[0].split() == ["car", "AP50", car_ap, "AP50:95", car_ap, "precision", "1.000", "recall", "0.333",
                                "(1", "boxes,", "3", "truths,", "0", "ignored)"]
    assert lines[1].split() == ["boat", "AP50", "0.000", "AP50:95", "0.000", "precision", "n/a", "recall", "0.000",
                                "(0", "boxes,", "1", "truths,", "0", "ignored)"]
    assert lines[2].split() == ["mean", "AP50", f"{34 / 202:.3f}", "AP50:95", f"{34 / 202:.3f}"]
    assert lines[-1] == f"wrote {run}-evaluation/evaluation.json and {run}-evaluation/pr_curve.png"


def test_command_without_detections_exits_2(tmp_path, capsys):
    (tmp_path / "truth.json").write_text(json.dumps(quadrant_truth()))
    (tmp_path / "run").mkdir()
    assert evaluate_app.main(["--run", str(tmp_path / "run"), "--truth", str(tmp_path / "truth.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "detections" in err and "\n" not in err


def test_a_collection_of_pictures_is_pointed_to_the_picture_folder(tmp_path, capsys):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    run = write_run(tmp_path / "run", truth, [(1, 16, 16)])
    detections = json.loads((tmp_path / "run" / "detections.json").read_text())
    detections["images"] = [{**truth["images"][0], "id": k, "name": name} for k, name in ((1, "first"), (2, "second"))]
    (tmp_path / "run" / "detections.json").write_text(json.dumps(detections))
    assert evaluate_app.main(["--run", run, "--truth", str(tmp_path / "truth.json")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {run} holds the detections of 2 pictures: evaluate the picture "
                                               f"the truth is for, by its folder (e.g. --run {run}/first)")
    assert not (tmp_path / "run" / "evaluation.json").exists() and not (tmp_path / "run-evaluation").exists()


def test_loading_a_collections_folder_points_to_a_picture_folder(tmp_path):
    from evaluation.runs import load_run

    run = write_run(tmp_path / "run", quadrant_truth(), [(1, 16, 16)])
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"pictures": [{"name": "first", "status": "scored"}]}))
    (tmp_path / "run" / "_SUCCESS").write_text("")
    with pytest.raises(ValueError, match=f"^{run} is a collection's folder: load one picture's folder "
                                         rf"\(e.g. {run}/first\)$"):
        load_run(run)


# --- where an evaluation goes: beside the run, never into it ---------------------------------------

QUADRANTS = np.array([[0, 0, 32, 32], [32, 0, 64, 32], [0, 32, 32, 64], [32, 32, 64, 64]])
QUADRANT_LABELS = ["car", "boat", "car", "car"]


def committed(folder) -> pathlib.Path:
    """``folder`` made a committed tilescan run: its marker and ``_SUCCESS``, as a commit leaves them."""
    folder = pathlib.Path(folder)
    (folder / "_tilescan").write_text(json.dumps({"tool": "tilescan", "run_id": "earlier"}))
    (folder / "_SUCCESS").write_text("")
    return folder


def every_file(folder) -> dict:
    """Each file under ``folder``, by its path there, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def collection_picture(tmp_path, truth, *, layout: str) -> pathlib.Path:
    """The committed picture ``p`` of a committed collection ``coll``. Its windows are its part of
    the run's dataset, where its manifest says (``new``), or (``old``: before the one-copy
    layout) both that part and its own windows.parquet, and a manifest that says nothing."""
    coll = tmp_path / "coll"
    coll.mkdir()
    picture = pathlib.Path(write_run(coll / "p", truth, [(1, 16, 16)], QUADRANTS, QUADRANT_LABELS))
    part = coll / "windows" / "image=p" / "part-00000.parquet"
    part.parent.mkdir(parents=True)
    manifest = {"tool": "tilescan", "counts": {"windows_scored": 4, "windows_kept": 4}}
    if layout == "new":
        os.replace(picture / "windows.parquet", part)
        manifest["windows"] = "../windows/image=p/part-00000.parquet"
    else:
        part.write_bytes((picture / "windows.parquet").read_bytes())
    (picture / "manifest.json").write_text(json.dumps(manifest))
    (coll / "manifest.json").write_text(json.dumps({"tool": "tilescan", "pictures": [{"name": "p"}]}))
    committed(coll)
    return committed(picture)


def test_a_committed_run_is_evaluated_beside_it_never_into_it(tmp_path, capsys):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    run = committed(write_run(tmp_path / "run", truth, [(1, 16, 16)], QUADRANTS, QUADRANT_LABELS, scored=4))
    before = every_file(run)
    assert evaluate_app.main(["--run", str(run), "--truth", str(tmp_path / "truth.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (f"wrote {tmp_path}/run-evaluation/evaluation.json and "
                                                        f"{tmp_path}/run-evaluation/pr_curve.png")
    assert every_file(run) == before
    written = json.loads((tmp_path / "run-evaluation" / "evaluation.json").read_text())
    assert written["windows"]["accuracy"] == pytest.approx(0.75)

    # Or into a folder of one's own, made if need be.
    out = tmp_path / "mine" / "eval-1"
    assert evaluate_app.main(["--run", str(run), "--truth", str(tmp_path / "truth.json"), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["evaluation.json", "pr_curve.png"] and every_file(run) == before


@pytest.mark.parametrize("layout", ["new", "old"])
def test_a_picture_of_a_collection_is_evaluated_beside_the_collection_with_its_windows(layout, tmp_path, capsys):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    picture = collection_picture(tmp_path, truth, layout=layout)
    before = every_file(tmp_path / "coll")
    assert evaluate_app.main(["--run", str(picture), "--truth", str(tmp_path / "truth.json")]) == 0
    evaluated = tmp_path / "coll-evaluation" / "p"
    assert capsys.readouterr().out.splitlines()[-1] == (f"wrote {evaluated}/evaluation.json and "
                                                        f"{evaluated}/pr_curve.png")
    # The window confusion matrix: the picture's windows were found, wherever its layout keeps them.
    written = json.loads((evaluated / "evaluation.json").read_text())["windows"]
    assert written["windows"] == 4 and written["accuracy"] == pytest.approx(0.75)
    assert every_file(tmp_path / "coll") == before


@pytest.mark.parametrize("where", ["the run", "inside the run", "the collection", "a picture of the collection"])
def test_an_out_that_is_a_run_or_inside_one_is_refused(where, tmp_path, capsys):
    truth = quadrant_truth()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    run = committed(write_run(tmp_path / "run", truth, [(1, 16, 16)], QUADRANTS, QUADRANT_LABELS, scored=4))
    picture = collection_picture(tmp_path, truth, layout="new")
    out, inside = {"the run": (run, run), "inside the run": (run / "evaluation", run),
                   "the collection": (tmp_path / "coll", tmp_path / "coll"),
                   "a picture of the collection": (picture / "more" / "eval", picture)}[where]
    before = every_file(tmp_path)
    code = evaluate_app.main(["--run", str(run), "--truth", str(tmp_path / "truth.json"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    verb = "is" if out == inside else "is inside"
    assert err.startswith(f"error: the evaluation folder {out} {verb} the committed tilescan run {inside}: an "
                          "evaluation never writes into a run; choose another folder")
    assert every_file(tmp_path) == before  # nothing written, no folder made
    assert out == inside or not out.exists()


@pytest.mark.parametrize("layout", ["single", "new", "old"])
def test_a_run_is_loaded_with_its_windows_in_any_layout(layout, tmp_path):
    from PIL import Image

    from evaluation.runs import load_run

    truth = quadrant_truth()
    if layout == "single":
        run = committed(write_run(tmp_path / "run", truth, [(1, 16, 16)], QUADRANTS, QUADRANT_LABELS, scored=4))
        (run / "manifest.json").write_text(json.dumps({"tool": "tilescan", "windows": "windows.parquet"}))
    else:
        run = collection_picture(tmp_path, truth, layout=layout)
    Image.new("RGB", (64, 64)).save(run / "overlay.png")
    loaded = load_run(str(run))
    assert loaded.windows is not None and len(loaded.windows) == 4
    assert loaded.windows[["x", "y"]].values.tolist() == QUADRANTS[:, :2].tolist()


def test_a_manifest_that_points_outside_the_run_by_an_absolute_path_is_refused(tmp_path):
    from scoring.stored_windows import windows_path

    with pytest.raises(ValueError, match=r"says its windows are at '/etc/passwd': expected a path relative"):
        windows_path(str(tmp_path), {"windows": "/etc/passwd"})
    assert windows_path("az://c/run/p", {"windows": "../windows/image=p/part-00000.parquet"}) == \
        "az://c/run/windows/image=p/part-00000.parquet"
    assert windows_path("az://c/run", {}) == windows_path("az://c/run", None) == "az://c/run/windows.parquet"
