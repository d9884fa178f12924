"""Scoring a collection in one run: the same windows as one-picture runs, failures recorded,
--resume, lists of pictures, headers read on executors, and the Python API."""
from __future__ import annotations

import json
import os
import re
import shutil

import pyarrow.parquet as pq
import pytest

from app import score
from core.errors import InputError
from core.project import ROOT
from scoring import pipeline, planning
from scoring.api import score_images
from scoring.inputs import MAX_NAME_BYTES
from scoring.params import ScoreParams
from scoring.pipeline import EXIT_SOME_FAILED, prepare, run
from tests.conftest import write_noise_png
from tests.reference import assert_same_scores, table_scores

pytestmark = [pytest.mark.slow, pytest.mark.spark]

CLASSES = ("car", "boat", "background")
COMMON = ["--threshold", "0.34", "--keep", "0", "--quiet"]
SIZES = {"wide": (700, 90), "tall": (96, 500), "small": (64, 64), "square": (300, 300)}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    for seed, (name, (width, height)) in enumerate(SIZES.items()):
        write_noise_png(folder / f"{name}.png", width, height, seed=seed)
    return folder


def three_pictures(pictures, folder):
    """A folder of copies of the wide, small and square pictures: a collection to score."""
    folder.mkdir()
    for name in ("wide", "small", "square"):
        (folder / f"{name}.png").write_bytes((pictures / f"{name}.png").read_bytes())
    return folder


def damaged_copy(src, dest) -> str:
    data = bytearray(open(src, "rb").read())
    data[len(data) // 2:len(data) // 2 + 300] = bytes(300)  # header and end marker intact, pixel data not
    dest.write_bytes(bytes(data))
    return str(dest)


def test_a_folder_gives_each_picture_its_one_picture_outputs(spark, capsys, tmp_path, pictures, random_bundle_dir):
    out = tmp_path / "run"
    code = score.main(["--image", str(pictures), "--out", str(out), "--model", random_bundle_dir,
                       "--master", spark.sparkContext.master, *COMMON])
    assert code == 0, capsys.readouterr().err
    manifest = json.load(open(out / "manifest.json"))
    assert [p["name"] for p in manifest["pictures"]] == sorted(SIZES)
    assert {p["status"] for p in manifest["pictures"]} == {"scored"}
    assert (out / "_SUCCESS").exists()
    detections = json.load(open(out / "detections.json"))
    assert len(detections["images"]) == len(SIZES)
    dataset = pq.read_table(out / "windows").to_pandas()
    # A picture's windows are kept once: its part of the run's dataset, never a copy in its folder.
    assert not list(out.rglob("windows.parquet"))
    assert sorted(os.listdir(out / "windows")) == [f"image={name}" for name in sorted(SIZES)]
    assert all(os.listdir(out / "windows" / f"image={name}") == ["part-00000.parquet"] for name in SIZES)
    for name, (width, height) in SIZES.items():
        one = tmp_path / f"one-{name}"
        assert score.main(["--image", str(pictures / f"{name}.png"), "--out", str(one), "--model",
                           random_bundle_dir, "--master", spark.sparkContext.master, *COMMON]) == 0
        mine = pq.read_table(out / "windows" / f"image={name}" / "part-00000.parquet")
        alone = pq.read_table(one / "windows.parquet")
        assert_same_scores(table_scores(mine, CLASSES), table_scores(alone, CLASSES), atol=0)
        assert json.load(open(out / name / "detections.json"))["annotations"] == \
            json.load(open(one / "detections.json"))["annotations"]
        assert (dataset["image"] == name).sum() == mine.num_rows == alone.num_rows
        listed = set(os.listdir(out / name))
        assert {"_SUCCESS", "_tilescan", "detections.geojson", "detections.json", "manifest.json",
                "overlay.png"} <= listed and "windows.parquet" not in listed
        picture = json.load(open(out / name / "manifest.json"))
        assert picture["windows"] == f"../windows/image={name}/part-00000.parquet"  # where its windows are
        assert json.load(open(one / "manifest.json"))["windows"] == "windows.parquet"
        assert (picture["input"]["width"], picture["input"]["height"]) == (width, height)
        assert picture["input"]["url"] == str(pictures / f"{name}.png")


def test_a_damaged_picture_is_recorded_and_the_others_finish_then_resume(spark, capsys, tmp_path, pictures,
                                                                          random_bundle_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("wide", "small"):
        (folder / f"{name}.png").write_bytes((pictures / f"{name}.png").read_bytes())
    damaged_copy(pictures / "square.png", folder / "square.png")
    out = tmp_path / "run"
    argv = ["--image", str(folder), "--out", str(out), "--model", random_bundle_dir,
            "--master", spark.sparkContext.master, *COMMON]
    assert score.main(argv) == EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert f"failed: {folder / 'square.png'}: image is truncated or corrupt" in err
    manifest = json.load(open(out / "manifest.json"))
    status = {p["name"]: (p["status"], p.get("error", "")) for p in manifest["pictures"]}
    assert status["wide"][0] == status["small"][0] == "scored"
    assert status["square"][0] == "failed" and "truncated or corrupt" in status["square"][1]
    assert not (out / "square").exists() and manifest["counts"]["failed"] == 1
    assert not (out / "windows" / "image=square").exists() and "windows" not in manifest["pictures"][1]

    # Mend the picture; without --resume the finished run is not silently redone.
    (folder / "square.png").write_bytes((pictures / "square.png").read_bytes())
    assert score.main(argv) == 2
    assert "pass --overwrite to replace it (or --resume to keep its finished pictures)" in capsys.readouterr().err
    def part(name):
        return out / "windows" / f"image={name}" / "part-00000.parquet"

    kept = {name: os.stat(part(name)).st_mtime_ns for name in ("wide", "small")}
    assert score.main([*argv, "--resume"]) == 0
    manifest = json.load(open(out / "manifest.json"))
    status = {p["name"]: p["status"] for p in manifest["pictures"]}
    assert status == {"small": "skipped", "square": "scored", "wide": "skipped"}
    assert {name: os.stat(part(name)).st_mtime_ns for name in kept} == kept
    assert {p["name"]: p.get("windows") for p in manifest["pictures"]} == {
        name: f"windows/image={name}/part-00000.parquet" for name in status}
    assert (out / "square" / "_SUCCESS").exists() and (out / "_SUCCESS").exists()


def test_a_picture_replaced_between_planning_and_scoring_fails_alone(spark, tmp_path, pictures, random_bundle_dir):
    folder = three_pictures(pictures, tmp_path / "in")
    params = ScoreParams(out=str(tmp_path / "run"), image=str(folder), model=random_bundle_dir,
                         threshold={"*": 0.34}, quiet=True)
    prepared = prepare(params)
    write_noise_png(folder / "square.png", 300, 150, seed=9)  # the planned bands reach below its last row
    manifest = run(prepared, spark)
    status = {p["name"]: (p["status"], p.get("error", "")) for p in manifest["pictures"]}
    assert status["wide"][0] == status["small"][0] == "scored"
    assert status["square"] == ("failed", f"image decodes to 300x150, but its header read 300x300 when the run was "
                                          f"planned (replaced since?): {folder / 'square.png'}")


def without_ids(detections: dict) -> dict:
    """Each picture's annotations, by picture name, with the run-wide ids left out."""
    names = {image["id"]: image["name"] for image in detections["images"]}
    found = {name: [] for name in names.values()}
    for a in detections["annotations"]:
        found[names[a["image_id"]]].append({k: v for k, v in a.items() if k not in ("id", "image_id")})
    return found


def test_resume_keeps_boxes_counts_and_windows_and_refuses_other_settings(spark, capsys, tmp_path, pictures,
                                                                         random_bundle_dir):
    folder = three_pictures(pictures, tmp_path / "in")
    out = tmp_path / "run"
    argv = ["--image", str(folder), "--out", str(out), "--model", random_bundle_dir,
            "--master", spark.sparkContext.master, *COMMON]
    assert score.main(argv) == 0
    whole = json.load(open(out / "detections.json"))
    first = {p["name"]: p for p in json.load(open(out / "manifest.json"))["pictures"]}
    rows = pq.read_table(out / "windows").num_rows
    assert sum(map(len, without_ids(whole).values())) > 0  # boxes to keep

    # A run stopped before 'square' was finished; 'small''s windows (their one copy) removed since:
    # it is scored again, never kept without its windows.
    shutil.rmtree(out / "square")
    shutil.rmtree(out / "windows" / "image=small")
    (out / "_SUCCESS").unlink()
    assert score.main([*argv, "--resume"]) == 0
    manifest = json.load(open(out / "manifest.json"))
    by_name = {p["name"]: p for p in manifest["pictures"]}
    assert {n: p["status"] for n, p in by_name.items()} == {"wide": "skipped", "small": "scored", "square": "scored"}
    assert by_name["small"]["note"] == ("scored again: finished earlier, but its "
                                        "windows/image=small/part-00000.parquet is missing")
    assert "small: scored again" in capsys.readouterr().err
    assert by_name["wide"]["counts"] == first["wide"]["counts"]
    assert by_name["small"]["counts"]["windows_kept"] == first["small"]["counts"]["windows_kept"]
    resumed = json.load(open(out / "detections.json"))
    assert without_ids(resumed) == without_ids(whole)
    assert [a["id"] for a in resumed["annotations"]] == list(range(1, len(resumed["annotations"]) + 1))
    assert pq.read_table(out / "windows").num_rows == rows

    # Other settings would mix two runs' answers in one: refused before Spark, nothing touched.
    before = os.stat(out / "manifest.json").st_mtime_ns
    for other, message in ((["--stride", "32"], "small in"), (["--threshold", "0.5"], "--threshold")):
        assert score.main([*argv, "--resume", *other]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --resume: ") and message in err and "--overwrite" in err
        assert err.count("\n") == 1
    assert os.stat(out / "manifest.json").st_mtime_ns == before

    # Replaced by a run of fewer pictures: the run's dataset and detections hold only those.
    (folder / "square.png").unlink()
    assert score.main([*argv, "--overwrite"]) == 0
    assert sorted(os.listdir(out / "windows")) == ["image=small", "image=wide"]
    assert set(without_ids(json.load(open(out / "detections.json")))) == {"small", "wide"}

    # A picture whose file changed since it was finished is scored again.
    write_noise_png(folder / "small.png", 64, 64, seed=42)
    assert score.main([*argv, "--resume"]) == 0
    status = {p["name"]: p["status"] for p in json.load(open(out / "manifest.json"))["pictures"]}
    assert status == {"small": "scored", "wide": "skipped"}


def test_a_kept_picture_whose_outputs_are_damaged(spark, capsys, tmp_path, pictures, random_bundle_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("wide", "small"):
        (folder / f"{name}.png").write_bytes((pictures / f"{name}.png").read_bytes())
    out = tmp_path / "run"
    argv = ["--image", str(folder), "--out", str(out), "--model", random_bundle_dir,
            "--master", spark.sparkContext.master, *COMMON, "--resume"]
    assert score.main(argv) == 0
    capsys.readouterr()

    # A manifest that cannot be read: refused before Spark, in one line.
    good = (out / "wide" / "manifest.json").read_bytes()
    (out / "wide" / "manifest.json").write_text("{not json")
    assert score.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: the manifest of wide, finished earlier in ") and "not JSON" in err
    assert err.count("\n") == 1
    (out / "wide" / "manifest.json").write_bytes(good)

    # Boxes that cannot be read: that picture fails alone (exit 3), the other is kept.
    (out / "small" / "detections.json").write_text("[]")
    assert score.main(argv) == EXIT_SOME_FAILED
    status = {p["name"]: (p["status"], p.get("error", "")) for p in json.load(open(out / "manifest.json"))["pictures"]}
    assert status["wide"] == ("skipped", "")
    assert status["small"][0] == "failed" and "not a JSON object" in status["small"][1]
    assert sorted(os.listdir(out / "windows")) == ["image=wide"]


def test_waves_commit_as_they_go_and_give_the_results_of_one(spark, tmp_path, pictures, random_bundle_dir,
                                                              monkeypatch):
    from pyspark import RDD

    def params(out, **more):
        return ScoreParams(image=str(pictures), out=str(tmp_path / out), model=random_bundle_dir,
                           threshold={"*": 0.34}, keep=0.0, quiet=True, **more)

    one = run(prepare(params("one")), spark)
    assert one["timings_s"]["waves"] == 1
    monkeypatch.setattr(planning, "WAVE_WINDOWS_PER_CORE", 1)  # a wave per picture

    # The driver is lost during the third wave: the first two are committed, and kept by --resume.
    real_collect, calls = RDD.collect, []

    def collect_then_lost(self):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("driver lost")
        return real_collect(self)

    monkeypatch.setattr(RDD, "collect", collect_then_lost)
    with pytest.raises(RuntimeError, match="driver lost"):
        run(prepare(params("waves")), spark)
    monkeypatch.setattr(RDD, "collect", real_collect)
    done = sorted(n for n in SIZES if (tmp_path / "waves" / n / "_SUCCESS").exists())
    assert len(done) == 2 and not (tmp_path / "waves" / "_SUCCESS").exists()

    resumed = run(prepare(params("waves", resume=True)), spark)
    assert resumed["timings_s"]["waves"] == 2
    assert sorted(p["name"] for p in resumed["pictures"] if p["status"] == "skipped") == done
    assert without_ids(json.load(open(tmp_path / "waves" / "detections.json"))) == \
        without_ids(json.load(open(tmp_path / "one" / "detections.json")))

    def rows(run_name):
        table = pq.read_table(tmp_path / run_name / "windows")
        return sorted(tuple(r.values()) for r in table.select(["image", "x", "y", "p_car", "p_boat",
                                                                 "p_background"]).to_pylist())

    assert rows("waves") == rows("one")


def test_a_run_inside_the_folder_it_scores_never_scores_its_own_outputs(spark, tmp_path, pictures,
                                                                         random_bundle_dir):
    from scoring.inputs import resolve_inputs

    folder = tmp_path / "scans"
    (folder / "more").mkdir(parents=True)
    for name, where in (("wide", folder), ("small", folder / "more")):
        (where / f"{name}.png").write_bytes((pictures / f"{name}.png").read_bytes())
    mine = [str(folder / "more" / "small.png"), str(folder / "wide.png")]
    argv = ["--image", str(folder), "--out", str(folder / "results"), "--model", random_bundle_dir,
            "--master", spark.sparkContext.master, *COMMON]
    assert score.main(argv) == 0
    assert len(list(folder.rglob("overlay.png"))) == 2
    for image in (str(folder), f"{folder}/**/*.png"):
        assert sorted(resolve_inputs(image).urls) == mine
    for image in (str(folder / "results"), f"{folder}/results/*/*.png"):
        with pytest.raises(InputError, match="tilescan's own outputs are never taken"):
            resolve_inputs(image)
    assert score.main([*argv, "--resume"]) == 0
    assert sorted(p["url"] for p in json.load(open(folder / "results" / "manifest.json"))["pictures"]) == mine


def test_a_name_with_glob_characters_that_exists_is_itself_not_a_pattern(tmp_path):
    from scoring.inputs import resolve_inputs

    folder = tmp_path / "scans[2024]"
    folder.mkdir()
    for name in ("q[1].png", "q1.png"):
        write_noise_png(folder / name, 40, 40)
    literal = resolve_inputs(str(folder / "q[1].png"))
    assert literal.single and literal.urls == (str(folder / "q[1].png"),)
    assert sorted(resolve_inputs(str(folder)).urls) == sorted(str(folder / n) for n in ("q1.png", "q[1].png"))
    pattern = resolve_inputs(str(tmp_path / "scans[[]2024]" / "q[12].png"))  # no such name: a pattern
    assert not pattern.single and pattern.urls == (str(folder / "q1.png"),)


def test_a_folder_or_a_glob_skips_hidden_files_and_folders(tmp_path):
    from scoring.inputs import resolve_inputs

    folder = tmp_path / "scans"
    (folder / ".thumbs").mkdir(parents=True)
    write_noise_png(folder / "a.png", 40, 40)
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource data: no picture, it failed the run
    write_noise_png(folder / ".thumbs" / "t.png", 40, 40)
    mine = (str(folder / "a.png"),)
    assert resolve_inputs(str(folder)).urls == mine
    assert resolve_inputs(f"{folder}/*.png").urls == mine
    assert resolve_inputs(f"{folder}/**/*.png").urls == mine
    # Named on purpose, they are taken: a pattern that names hidden files, a hidden folder, one file.
    assert resolve_inputs(f"{folder}/.*.png").urls == (str(folder / "._a.png"),)
    assert resolve_inputs(str(folder / ".thumbs")).urls == (str(folder / ".thumbs" / "t.png"),)
    assert resolve_inputs(str(folder / "._a.png")).single


def test_typed_columns_of_a_parquet_list_travel_as_json(tmp_path, pictures):
    import datetime
    import decimal

    import pyarrow as pa

    from scoring.inputs import resolve_inputs

    listing = tmp_path / "list.parquet"
    pq.write_table(pa.table({
        "path": [str(pictures / "small.png")], "taken": [datetime.datetime(2026, 1, 2, 3, 4, 5)],
        "day": [datetime.date(2026, 1, 2)], "price": pa.array([decimal.Decimal("1.50")], pa.decimal128(5, 2)),
        "raw": [b"\x00\x01"], "tags": [["a", "b"]], "gap": [float("nan")], "ok": [True], "n": [3],
    }), listing)
    (attributes,) = resolve_inputs(images=str(listing)).attributes
    assert attributes == {"taken": "2026-01-02T03:04:05", "day": "2026-01-02", "price": "1.50", "raw": "0001",
                          "tags": ["a", "b"], "gap": None, "ok": True, "n": 3}
    json.dumps(attributes, allow_nan=False)  # what the manifests hold is strict JSON


def test_a_list_file_with_attributes_and_headers_read_on_executors(spark, tmp_path, pictures, random_bundle_dir,
                                                                   monkeypatch):
    monkeypatch.setattr(pipeline, "PROBE_ON_DRIVER", 1)  # read the headers on the executors
    listing = tmp_path / "list.csv"
    listing.write_text("path,split\n" + "".join(f"{pictures / n}.png,{'train' if k % 2 else 'test'}\n"
                                                  for k, n in enumerate(SIZES)) + f"{tmp_path / 'gone.png'},test\n")
    out = tmp_path / "run"
    params = ScoreParams(out=str(out), images=str(listing), model=random_bundle_dir, threshold={"*": 0.34},
                         quiet=True)
    manifest = run(prepare(params), spark)
    by_name = {p["name"]: p for p in manifest["pictures"]}
    assert by_name["gone"]["status"] == "failed" and by_name["gone"]["error"].startswith("image not found")
    assert [by_name[n]["attributes"]["split"] for n in SIZES] == ["test", "train", "test", "train"]
    assert all(by_name[n]["status"] == "scored" for n in SIZES)


def test_a_picture_a_list_names_in_several_ways_is_scored_once(tmp_path, pictures, random_bundle_dir):
    picture = pictures / "small.png"
    relative = os.path.relpath(picture, tmp_path)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,note\n{relative},first\n./{relative},second\n"
                       f"../{tmp_path.name}/{relative},third\n{picture},fourth\n")
    params = ScoreParams(out=str(tmp_path / "run"), images=str(listing), model=random_bundle_dir, quiet=True)
    prepared = prepare(params)
    assert [(p.url, p.name, p.attributes) for p in prepared.pictures] == [(str(picture), "small", {"note": "first"})]


def test_pictures_named_in_any_script_keep_their_names(spark, tmp_path, random_bundle_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for k, name in enumerate(("über", "扫描 1", "кот")):
        write_noise_png(folder / f"{name}.png", 64, 48, seed=k)
    result = score_images(spark, str(folder), str(tmp_path / "run"), model=random_bundle_dir, keep=0.0, quiet=True)
    names = {"über", "扫描_1", "кот"}
    assert {p["name"] for p in result.pictures} == names and not result.failed
    assert all((tmp_path / "run" / name / "_SUCCESS").exists() for name in names)
    assert set(result.windows().column("image").to_pylist()) == names


def test_pictures_with_names_too_long_for_a_folder_are_scored_under_shortened_names(spark, tmp_path,
                                                                                     random_bundle_dir):
    # 255 bytes are a file name's most; 'image=' + the name failed in the windows dataset.
    folder = tmp_path / "in"
    folder.mkdir()
    for k, name in enumerate(("a" * 251, "ü" * 125)):
        write_noise_png(folder / f"{name}.png", 64, 48, seed=k)
    result = score_images(spark, str(folder), str(tmp_path / "run"), model=random_bundle_dir, keep=0.0, quiet=True)
    assert not result.failed
    names = [p["name"] for p in result.pictures]
    assert [name[:3] for name in names] == ["aaa", "üüü"]
    assert all(len(name.encode()) <= MAX_NAME_BYTES == 249 for name in names)
    assert all((tmp_path / "run" / name / "_SUCCESS").exists() for name in names)
    assert set(result.windows().column("image").to_pylist()) == set(names)


def test_pictures_named_like_the_runs_own_files_get_folders_of_their_own(spark, tmp_path, random_bundle_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for k, name in enumerate(("manifest.json", "detections.json", "windows", "evaluation.json")):
        write_noise_png(folder / f"{name}.png", 64, 48, seed=k)
    result = score_images(spark, str(folder), str(tmp_path / "run"), model=random_bundle_dir, quiet=True)
    assert not result.failed and len(result.pictures) == 4
    run_folder = tmp_path / "run"
    assert (run_folder / "manifest.json").is_file() and (run_folder / "detections.json").is_file()
    for picture in result.pictures:
        assert picture["name"] not in ("manifest.json", "detections.json", "windows", "evaluation.json")
        assert (run_folder / picture["name"] / "_SUCCESS").exists()


def test_python_api_on_a_run_where_every_picture_failed(spark, tmp_path, pictures, random_bundle_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    damaged_copy(pictures / "square.png", folder / "square.png")
    (folder / "empty.png").write_bytes(b"")
    result = score_images(spark, str(folder), str(tmp_path / "run"), model=random_bundle_dir, quiet=True)
    assert [p["status"] for p in result.failed] == ["failed", "failed"]
    assert len(result.boxes()) == 0
    windows = result.windows()
    assert windows.num_rows == 0 and windows.column_names == ["image"]


def as_before_one_copy(out, names) -> None:
    """Make the collection in ``out`` look written before each picture's windows were kept once:
    a copy of each picture's part in its folder, and manifests that say nothing of where."""
    for name in names:
        (out / name / "windows.parquet").write_bytes(
            (out / "windows" / f"image={name}" / "part-00000.parquet").read_bytes())
        manifest = json.load(open(out / name / "manifest.json"))
        del manifest["windows"]
        (out / name / "manifest.json").write_text(json.dumps(manifest))


def test_a_collection_written_with_two_copies_of_its_windows_is_read_and_resumed_once(spark, tmp_path, pictures,
                                                                                     random_bundle_dir):
    folder = three_pictures(pictures, tmp_path / "in")
    out = tmp_path / "run"
    result = score_images(spark, str(folder), str(out), model=random_bundle_dir, keep=0.0, quiet=True)
    rows = result.windows().num_rows
    assert rows == sum(p["counts"]["windows_kept"] for p in result.pictures) > 0
    as_before_one_copy(out, ("wide", "small", "square"))
    # The API reads the dataset alone, never the pictures' copies beside it.
    assert result.windows().num_rows == result.windows_frame(spark).count() == rows

    # Stopped (as that version could be) after 'small' was committed but before its part was written,
    # and before 'square' was finished: 'small' is kept, its part restored from its own copy.
    shutil.rmtree(out / "square")
    shutil.rmtree(out / "windows" / "image=small")
    (out / "_SUCCESS").unlink()
    resumed = score_images(spark, str(folder), str(out), model=random_bundle_dir, keep=0.0, quiet=True, resume=True)
    assert {p["name"]: p["status"] for p in resumed.pictures} == {"wide": "skipped", "small": "skipped",
                                                                  "square": "scored"}
    assert (out / "windows" / "image=small" / "part-00000.parquet").read_bytes() == \
        (out / "small" / "windows.parquet").read_bytes()
    assert not (out / "square" / "windows.parquet").exists()  # scored now: one copy
    assert resumed.windows().num_rows == resumed.windows_frame(spark).count() == rows

    # Replaced: every picture's windows once, the earlier copies in their folders gone with that run.
    again = score_images(spark, str(folder), str(out), model=random_bundle_dir, keep=0.0, quiet=True, overwrite=True)
    assert not list(out.rglob("windows.parquet")) and again.windows().num_rows == rows


def test_python_api_reads_a_single_pictures_run_and_a_run_without_windows(spark, tmp_path, pictures,
                                                                          random_bundle_dir):
    from scoring.api import ScoredRun

    out = tmp_path / "one"
    assert score.main(["--image", str(pictures / "small.png"), "--out", str(out), "--model", random_bundle_dir,
                       "--master", spark.sparkContext.master, *COMMON]) == 0
    run = ScoredRun(str(out), json.load(open(out / "manifest.json")))
    alone = pq.read_table(out / "windows.parquet")
    table = run.windows()
    assert table.drop_columns(["image"]).equals(alone) and set(table.column("image").to_pylist()) == {"small"}
    frame = run.windows_frame(spark)
    assert frame.count() == alone.num_rows and dict(frame.dtypes)["image"] == "string"
    assert {row.image for row in frame.select("image").distinct().collect()} == {"small"}
    boxes = run.boxes()  # a single picture's detections.json names no picture: its boxes take the same name
    assert len(boxes) == run.manifest["counts"]["boxes"] > 0 and set(boxes["image"]) == {"small"}
    empty = ScoredRun(str(tmp_path / "nothing"), {"pictures": []})
    assert empty.windows().column_names == ["image"] and empty.windows_frame(spark).count() == 0


def test_python_api_returns_boxes_of_every_picture(spark, tmp_path, pictures, random_bundle_dir):
    urls = [str(pictures / f"{n}.png") for n in ("wide", "tall")]
    result = score_images(spark, urls, str(tmp_path / "run"), model=random_bundle_dir, threshold={"*": 0.34}, keep=0.0,
                          quiet=True)
    assert [p["status"] for p in result.pictures] == ["scored", "scored"] and not result.failed
    boxes = result.boxes()
    assert set(boxes["image"]) <= {"wide", "tall"} and len(boxes) == result.manifest["counts"]["boxes"]
    assert list(boxes.columns) == ["image", "url", "class", "x0", "y0", "x1", "y1", "score"]
    windows = result.windows()
    assert set(windows.column("image").to_pylist()) == {"wide", "tall"}  # one word for the picture


def test_python_api_runs_in_a_job_group_and_gives_the_sessions_own_back(spark, tmp_path, pictures,
                                                                       random_bundle_dir):
    sc = spark.sparkContext
    sc.setJobGroup("the-notebook's", "the notebook's own work")
    try:
        score_images(spark, str(pictures / "wide.png"), str(tmp_path / "run"), model=random_bundle_dir,
                     quiet=True, job_group="my-scoring")
        assert sc.statusTracker().getJobIdsForGroup("my-scoring")  # cancellable by that name
        assert sc.getLocalProperty("spark.jobGroup.id") == "the-notebook's"
        assert sc.getLocalProperty("spark.job.description") == "the notebook's own work"
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)


def test_python_api_errors_name_the_keywords_not_the_flags(spark, tmp_path, pictures, random_bundle_dir):
    from core.errors import TilescanError

    with pytest.raises(TilescanError) as caught:
        score_images(spark, str(pictures / "wide.png"), str(tmp_path / "run"), model=random_bundle_dir, stride=0,
                     batch_size=0)
    assert str(caught.value).startswith("stride= must be >= 1") and "--" not in str(caught.value)
    with pytest.raises(TilescanError, match=r"^overwrite= and resume= exclude each other"):
        score_images(spark, str(pictures), str(tmp_path / "run"), model=random_bundle_dir, overwrite=True, resume=True)


@pytest.mark.parametrize("single", [False, True])
def test_python_api_lists_a_folder_once(spark, tmp_path, pictures, random_bundle_dir, monkeypatch, single):
    from scoring import api
    from scoring.inputs import resolve_inputs

    listed = []  # --image values resolved: a folder is listed each time

    def counting(image=None, images=None, **options):
        if image is not None:
            listed.append(image)
        return resolve_inputs(image, images, **options)

    monkeypatch.setattr(api, "resolve_inputs", counting)
    monkeypatch.setattr(pipeline, "resolve_inputs", counting)
    prepared = []
    monkeypatch.setattr(api, "run", lambda p, spark: prepared.append(p) or {"pictures": []})
    target = str(pictures / "wide.png") if single else str(pictures)
    score_images(spark, target, str(tmp_path / "run"), model=random_bundle_dir, quiet=True)
    assert listed == [target]
    assert not prepared[0].single, "the Python API always writes a collection's layout"
    expected = [target] if single else sorted(str(pictures / f"{n}.png") for n in SIZES)
    assert sorted(p.url for p in prepared[0].pictures) == expected


@pytest.mark.parametrize("images, out, message", [
    (None, "run", "`images` must be a path or URL (a picture, glob, folder or list file) or a list of them, "
                  "got NoneType"),
    (42, "run", "got int"),
    (["wide.png", 3], "run", "`images` must list paths or URLs, got 3"),
    (["wide.png"], None, "`out` must be a path or URL, got None"),
    (["wide.png"], "", "`out` must be a path or URL, got ''"),
])
def test_python_api_refuses_what_names_no_pictures_or_no_destination(images, out, message, tmp_path, pictures,
                                                                      random_bundle_dir):
    from core.errors import InputError

    if isinstance(images, list):
        images = [str(pictures / u) if isinstance(u, str) else u for u in images]
    out = str(tmp_path / out) if out else out
    with pytest.raises(InputError, match=re.escape(message)):
        score_images(None, images, out, model=random_bundle_dir, quiet=True)  # refused before Spark is touched
    assert not (tmp_path / "run").exists()


def test_python_api_without_a_spark_session_is_one_line_before_the_output_is_made(tmp_path, pictures,
                                                                                   random_bundle_dir):
    from core.errors import InputError

    class ConnectLike:  # as Spark Connect's session answers for the JVM's attributes
        def __getattr__(self, name):
            raise AttributeError(f"[JVM_ATTRIBUTE_NOT_SUPPORTED] {name}")

    for session, kind in ((None, "builtins.NoneType"), (ConnectLike(), f"{__name__}.{ConnectLike.__qualname__}")):
        with pytest.raises(InputError, match=rf"^`spark` must be a SparkSession \(classic or Spark Connect\), "
                                             rf"got {re.escape(kind)}$"):
            score_images(session, [str(pictures / "wide.png")], str(tmp_path / "run"), model=random_bundle_dir,
                         quiet=True)
    assert not (tmp_path / "run").exists()


def test_python_api_takes_path_objects(spark, tmp_path, pictures, random_bundle_dir, monkeypatch):
    from scoring import api

    prepared = []
    monkeypatch.setattr(api, "run", lambda p, spark: prepared.append(p) or {"pictures": []})
    result = score_images(spark, [pictures / "wide.png"], tmp_path / "run", model=random_bundle_dir, quiet=True)
    assert [p.url for p in prepared[0].pictures] == [str(pictures / "wide.png")]
    assert result.out == str(tmp_path / "run")


@pytest.mark.slow
def test_python_api_on_executors_without_scorings_packages_is_one_line_before_any_work(tmp_path, pictures,
                                                                                        random_bundle_dir):
    import subprocess
    import sys

    # A session whose executors run another environment, one without numpy (as a notebook started with
    # a venv's python without activating it: its executors run the python3 on PATH).
    bare = tmp_path / "bare"
    assert subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare]).returncode == 0
    script = tmp_path / "notebook.py"
    script.write_text(
        "import sys\n"
        "from pyspark.sql import SparkSession\n"
        "from core.errors import TilescanError\n"
        "from scoring.api import score_images\n"
        "spark = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate()\n"
        "try:\n"
        f"    score_images(spark, {str(pictures / 'wide.png')!r}, {str(tmp_path / 'run')!r}, "
        f"model={random_bundle_dir!r}, quiet=True)\n"
        "except TilescanError as exc:\n"
        "    print('error:', exc)\n"
        "spark.stop()\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT, "PYSPARK_PYTHON": str(bare / "bin" / "python")})
    said = [line for line in done.stdout.splitlines() if line.startswith("error:")]
    assert said == ["error: the executors' Python cannot import numpy, which scoring needs: set spark.pyspark.python "
                    "(or PYSPARK_PYTHON before the session starts) to an environment where tilescan is installed"], \
        done.stdout[-2000:] + done.stderr[-3000:]
    assert not (tmp_path / "run").exists()
