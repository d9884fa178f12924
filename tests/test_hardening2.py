"""The second probe's cases (the hardening issue after the first): special files, absurd bundles,
pictures whose headers mislead, lists, names and the Python API. Each ends in one line and the
documented exit code, or is handled as a user expects."""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from app import score
from core.bundle import load_bundle
from core.errors import BundleError, InputError, StorageError, TilescanError
from pixels import probe_image
from scoring.inputs import resolve_inputs
from tests.conftest import write_noise_png


def noise_folder(tmp_path, names, *, seeded: bool = True):
    """``tmp_path/in`` with an 80 x 64 noise picture ``NAME.png`` per name (seed = its position)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for k, name in enumerate(names):
        write_noise_png(folder / f"{name}.png", 80, 64, seed=k if seeded else 0)
    return folder


def run_cli(capsys, *args):
    code = score.main(list(args))
    return code, capsys.readouterr().err.strip()


# --- 1, 2: special files and servers that never answer ---------------------------------------


@pytest.mark.timeout(60)
def test_a_fifo_in_an_input_folder_is_skipped_and_one_given_by_name_is_refused(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    write_noise_png(folder / "good.png", 64, 48)
    os.mkfifo(folder / "x.png")
    inputs = resolve_inputs(str(folder))
    assert [os.path.basename(u) for u in inputs.urls] == ["good.png"]
    assert "skipped 1 special files" in caplog.text
    assert [os.path.basename(u) for u in resolve_inputs(str(folder / "*.png")).urls] == ["good.png"]
    with pytest.raises(InputError, match="not a regular file"):
        probe_image(str(folder / "x.png"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "too-large"])
def test_a_bundle_file_that_is_a_pipe_a_device_or_absurdly_large_is_refused_before_it_is_read(
        kind, tmp_path, random_bundle_dir, monkeypatch):
    copy = tmp_path / "bundle"
    shutil.copytree(random_bundle_dir, copy)
    target = copy / "model.onnx"
    os.remove(target)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", target)
    else:
        import core.bundle

        monkeypatch.setattr(core.bundle, "MAX_FILE_BYTES", 1000)
        shutil.copy(os.path.join(random_bundle_dir, "model.onnx"), target)
    message = "not a regular file" if kind != "too-large" else "over the 1,000 allowed"
    with pytest.raises(StorageError, match=message):
        load_bundle(str(copy))


@pytest.mark.timeout(60)
def test_a_server_that_accepts_and_never_answers_fails_the_read_after_the_timeout(monkeypatch):
    import core.storage

    monkeypatch.setattr(core.storage, "NETWORK_TIMEOUT_S", 1)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/silent-{time.time_ns()}.png"
    started = time.monotonic()
    with pytest.raises(TilescanError) as caught:
        probe_image(url)
    assert time.monotonic() - started < 30
    assert "\n" not in str(caught.value)
    server.close()


# --- 8, 9, 10: bundles with absurd values -----------------------------------------------------


@pytest.mark.parametrize("count", [2, 4, 16, 17, 10_000])
def test_a_class_count_unlike_the_model_s_outputs_is_one_line_before_spark(count, capsys, tmp_path,
                                                                          random_bundle_dir, small_image, no_spark):
    copy = tmp_path / "bundle"
    shutil.copytree(random_bundle_dir, copy)
    doc = json.load(open(copy / "model.json"))
    doc["classes"] = [f"c{k}" for k in range(count - 1)] + ["background"]
    del doc["golden"], doc["files"]["golden"]
    json.dump(doc, open(copy / "model.json", "w"))
    code, err = run_cli(capsys, "--image", small_image, "--out", str(tmp_path / "run"), "--model", str(copy))
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert f"names {count} classes" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, message", [
    ("mean", [float("nan"), 0.5, 0.5], "input.mean must be finite numbers"),
    ("std", [0.2, float("inf"), 0.2], "input.std must be finite numbers"),
    ("mean", ["0.5", 0.5, 0.5], "input.mean must be finite numbers"),
])
def test_non_finite_normalisation_is_refused_by_name(field, value, message, tmp_path, random_bundle_dir):
    copy = tmp_path / "bundle"
    shutil.copytree(random_bundle_dir, copy)
    raw = open(copy / "model.json").read()
    doc = json.loads(raw)
    doc["input"][field] = value
    open(copy / "model.json", "w").write(json.dumps(doc))  # NaN and Infinity as Python's json writes them
    with pytest.raises(BundleError, match=message):
        load_bundle(str(copy))


@pytest.mark.parametrize("recommended, message", [
    ({"threshold": {"car": "high"}}, "recommended.threshold.car must be a number in [0, 1], got 'high'"),
    ({"threshold": {"car": -1}}, "recommended.threshold.car must be a number in [0, 1], got -1"),
    ({"threshold": {"truck": 0.5}}, "recommended.threshold names unknown classes ['truck']"),
    ({"threshold": 0.5}, "recommended.threshold must be an object of class: number"),
    ({"merge": "blend"}, "recommended.merge must be one of fuse, nms, none, got 'blend'"),
    ({"merge_iou": 0}, "recommended.merge_iou must be a number in (0, 1]"),
    ({"engine": 7}, "recommended.engine must be an engine's name, got 7"),
])
def test_every_recommended_setting_is_checked_like_the_command_line_s(recommended, message, capsys, tmp_path,
                                                                       random_bundle_dir, small_image, no_spark):
    copy = tmp_path / "bundle"
    shutil.copytree(random_bundle_dir, copy)
    doc = json.load(open(copy / "model.json"))
    doc["recommended"] = recommended
    json.dump(doc, open(copy / "model.json", "w"))
    code, err = run_cli(capsys, "--image", small_image, "--out", str(tmp_path / "run"), "--model", str(copy))
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert message in err and str(copy) in err
    assert not (tmp_path / "run").exists()


# --- 19: numpy numbers from a notebook ---------------------------------------------------------


def test_numpy_numbers_are_taken_wherever_python_numbers_are(tmp_path):
    from scoring.params import ScoreParams

    params = ScoreParams(out=str(tmp_path / "run"), image="x.png", batch_size=np.int64(128), keep=np.float32(0.25),
                         stride=np.int32(8), threshold=np.float64(0.8), merge_iou=np.float64(0.4))
    doc = json.loads(json.dumps(params.to_json()))
    assert doc["batch_size"] == 128 and doc["stride"] == 8 and doc["keep"] == 0.25
    assert doc["threshold"] == {"*": 0.8} and doc["merge_iou"] == 0.4
    assert type(params.batch_size) is int and type(params.keep) is float
    with pytest.raises(TilescanError, match="--batch-size must be an integer"):
        ScoreParams(out="o", image="x.png", batch_size=np.float64(128))


# --- 5: an empty Parquet list --------------------------------------------------------------------


def test_an_empty_parquet_list_is_exit_2_in_a_process_of_its_own(tmp_path):
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.project import ROOT

    listed = tmp_path / "zero.parquet"
    pq.write_table(pa.table({"path": pa.array([], pa.string())}), listed)
    for _ in range(3):  # the abort came as the interpreter exited, 6 times in 8
        done = subprocess.run([sys.executable, os.path.join(ROOT, "app", "score.py"), "--images", str(listed),
                               "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"error: no pictures found for {listed}"
        assert not (tmp_path / "run").exists()


# --- 3: EXIF and TIFF orientation ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["TIFF", "PNG", "JPEG"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_probe_applies_the_orientation_the_decode_applies(fmt, orientation, tmp_path):
    from PIL import Image

    from pixels import read_image
    from pixels.bands import read_band

    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:8, :16] = 255  # a white corner, top left as stored
    path = tmp_path / f"oriented.{fmt.lower()}"
    if fmt == "TIFF":
        import tifffile

        tifffile.imwrite(path, stored, photometric="rgb", extratags=[(274, 3, 1, orientation, True)])
    else:
        exif = Image.Exif()
        exif[274] = orientation
        Image.fromarray(stored).save(path, fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    info = probe_image(str(path))
    shown = {3: np.rot90(stored, 2), 6: np.rot90(stored, -1), 8: np.rot90(stored, 1)}[orientation]
    assert (info.width, info.height) == (shown.shape[1], shown.shape[0]) and info.orientation == orientation
    pixels, _ = read_image(str(path))
    assert pixels.shape == shown.shape
    assert np.abs(pixels.astype(int) - shown).mean() < 8  # JPEG's rounding aside, the same picture
    assert np.array_equal(read_band(info, 0, info.height), pixels)


# --- 4: damaged JPEG data between intact markers ----------------------------------------------


def test_a_jpeg_whose_data_are_damaged_between_intact_markers_fails_to_read(tmp_path):
    import io

    from PIL import Image

    from pixels.bands import read_band

    ramp = (np.add.outer(np.arange(480), np.arange(640)) % 256).astype(np.uint8)[:, :, None].repeat(3, 2)
    encoded = io.BytesIO()
    Image.fromarray(ramp).save(encoded, "JPEG", quality=90)
    data = bytearray(encoded.getvalue())
    start = data.find(b"\xff\xda") + 200  # inside the scan: markers before and after stay intact
    data[start:start + 3000] = b"\x55" * 3000
    path = tmp_path / "damaged.jpg"
    path.write_bytes(bytes(data))
    info = probe_image(str(path))  # the header is fine
    with pytest.raises(InputError, match="Corrupt JPEG data") as caught:
        read_band(info, 0, info.height)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded.getvalue())
    assert read_band(probe_image(str(good)), 0, 480).shape == (480, 640, 3)


@pytest.mark.parametrize("kind", ["rotated", "cmyk"])
def test_a_jpeg_that_pillow_decodes_fails_too_when_its_data_are_damaged(kind, tmp_path):
    import io

    from PIL import Image

    from pixels.bands import read_band

    ramp = (np.add.outer(np.arange(480), np.arange(640)) % 256).astype(np.uint8)[:, :, None].repeat(3, 2)
    picture, options = Image.fromarray(ramp), {"quality": 90}
    if kind == "rotated":
        exif = Image.Exif()
        exif[0x0112] = 6
        options["exif"] = exif.tobytes()
    else:
        picture = picture.convert("CMYK")
    encoded = io.BytesIO()
    picture.save(encoded, "JPEG", **options)
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded.getvalue())
    info = probe_image(str(good))
    assert info.reader == "pillow"  # the path this test is about
    assert read_band(info, 0, info.height).shape[:2] == (info.height, info.width)
    data = bytearray(encoded.getvalue())
    start = data.find(b"\xff\xda") + 200
    data[start:start + 3000] = b"\x55" * 3000
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match="Corrupt JPEG data") as caught:
        read_band(probe_image(str(damaged)), 0, info.height)
    assert "\n" not in str(caught.value) and str(damaged) in str(caught.value)


# --- 6, 7: whole decodes that would cost gigabytes, refused from the header ----------------------


def test_a_huge_picture_of_a_format_that_cannot_be_read_in_bands_is_refused_from_its_header(tmp_path):
    import io
    import struct

    from PIL import Image

    small = io.BytesIO()
    Image.new("P", (1, 1)).save(small, "GIF")
    data = bytearray(small.getvalue())
    data[6:10] = struct.pack("<HH", 19_999, 19_999)  # the logical screen...
    descriptor = data.index(b"\x2c")
    data[descriptor + 5:descriptor + 9] = struct.pack("<HH", 19_999, 19_999)  # ...and the image
    path = tmp_path / "huge.gif"
    path.write_bytes(bytes(data))
    started = time.monotonic()
    with pytest.raises(InputError, match=r"a 19999x19999 GIF = 399,960,001 pixels; a GIF cannot be read in bands"):
        probe_image(str(path))
    assert time.monotonic() - started < 5
    (tmp_path / "small.gif").write_bytes(small.getvalue())
    assert probe_image(str(tmp_path / "small.gif")).width == 1


def test_a_tiff_of_one_enormous_tile_is_refused_from_its_header(tmp_path):
    import tifffile

    path = tmp_path / "one-tile.tif"
    pixels = np.zeros((1000, 1000, 3), np.uint8)
    tifffile.imwrite(path, pixels, photometric="rgb", tile=(6144, 6144), compression="zlib")
    with pytest.raises(InputError, match="stores its pixels in tiles of 37,748,736 pixels, over the 33,554,432"):
        probe_image(str(path))
    tifffile.imwrite(tmp_path / "tiles.tif", pixels, photometric="rgb", tile=(256, 256), compression="zlib")
    assert probe_image(str(tmp_path / "tiles.tif")).width == 1000


# --- 11: a destination whose name holds glob characters -----------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_an_out_folder_named_with_glob_characters_is_a_place_not_a_pattern(spark, tmp_path, capsys,
                                                                           random_bundle_dir):
    folder = noise_folder(tmp_path, [f"p{k}" for k in range(2)])
    out = str(tmp_path / "G[1]*")
    base = ["--image", str(folder), "--out", out, "--model", random_bundle_dir, "--quiet"]
    assert spark.sparkContext.master == "local[2]"
    assert score.main(base) == 0
    assert score.main([*base, "--overwrite"]) == 0, capsys.readouterr().err
    assert score.main([*base, "--resume"]) == 0, capsys.readouterr().err
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["counts"]["skipped"] == 2 and manifest["counts"]["failed"] == 0


# --- 12: --resume over a kept picture whose outputs were removed ---------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_resume_scores_again_a_finished_picture_whose_outputs_are_incomplete(spark, tmp_path, capsys,
                                                                            random_bundle_dir):
    folder = noise_folder(tmp_path, [f"p{k}" for k in range(3)])
    out = tmp_path / "run"
    base = ["--image", str(folder), "--out", str(out), "--model", random_bundle_dir, "--quiet", "--keep", "0"]
    assert spark.sparkContext.master == "local[2]"
    assert score.main(base) == 0
    part = out / "windows" / "image=p1" / "part-00000.parquet"  # the picture's windows, their one copy
    before = pq.read_table(part).drop_columns(["strip"])  # the band it was scored in: the plan's
    shutil.rmtree(out / "windows" / "image=p1")
    assert score.main([*base, "--resume"]) == 0, capsys.readouterr().err
    manifest = json.load(open(out / "manifest.json"))
    entries = {e["name"]: e for e in manifest["pictures"]}
    assert entries["p1"]["status"] == "scored"
    assert "its windows/image=p1/part-00000.parquet is missing" in entries["p1"]["note"]
    assert entries["p0"]["status"] == entries["p2"]["status"] == "skipped"
    assert pq.read_table(part).drop_columns(["strip"]).equals(before)
    assert not (out / "p1" / "windows.parquet").exists()


# --- 18: picture names that look like numbers ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_numeric_picture_names_stay_strings_for_pyarrow_and_spark(spark, tmp_path, random_bundle_dir):
    from scoring.api import score_images

    folder = noise_folder(tmp_path, ["0001", "010"], seeded=False)
    run = score_images(spark, str(folder), str(tmp_path / "run"), model=random_bundle_dir, keep=0.0, quiet=True)
    table = run.windows()
    assert str(table.schema.field("image").type) == "string"
    assert set(table.column("image").to_pylist()) == {"0001", "010"}
    frame = run.windows_frame(spark)
    assert dict(frame.dtypes)["image"] == "string"
    assert {row.image for row in frame.select("image").distinct().collect()} == {"0001", "010"}
    assert spark.conf.get("spark.sql.sources.partitionColumnTypeInference.enabled") == "true"


# --- 22: names that would meet ------------------------------------------------------------------


def test_output_names_are_unique_whatever_the_input_names():
    from scoring.inputs import MAX_NAME_BYTES, output_names

    first = output_names(["a/x.png", "b/x.png"])
    crafted = ["a/x.png", "b/x.png", f"c/{first[0]}.png", f"d/{first[1]}.PNG", "e/Photo.png", "f/photo.png",
               "g/" + "y" * 300 + ".png", "h/" + "y" * 300 + ".png"]
    names = output_names(crafted)
    assert len({n.lower() for n in names}) == len(crafted)
    assert all(len(("image=" + n).encode()) <= 255 and len(n.encode()) <= MAX_NAME_BYTES for n in names)
    assert output_names(crafted) == names  # the same names every time


# --- 24: list files ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("path,site\na.png,north,extra\n", "row 1 has 3 cells, the header names 2"),
    ("path,site,path\na.png,north,b.png\n", "the header names 'path' more than once"),
])
def test_a_csv_list_with_extra_cells_or_a_header_named_twice_is_refused(text, message, tmp_path):
    listed = tmp_path / "list.csv"
    listed.write_text(text)
    with pytest.raises(InputError, match=message):
        resolve_inputs(None, str(listed))


# --- 25: messages that name what is wrong --------------------------------------------------------


def test_unsupported_tiff_samples_and_big_png_text_are_named_not_called_corrupt(tmp_path):
    import tifffile
    from PIL import Image, PngImagePlugin

    tifffile.imwrite(tmp_path / "f32.tif", np.zeros((40, 50, 3), np.float32), photometric="rgb")
    with pytest.raises(InputError, match="a TIFF of float32 samples, 3 per pixel: tilescan reads 8- and 16-bit"):
        probe_image(str(tmp_path / "f32.tif"))
    tifffile.imwrite(tmp_path / "f32-grey.tif", np.zeros((40, 50), np.float32))
    with pytest.raises(InputError, match="floating-point images"):
        probe_image(str(tmp_path / "f32-grey.tif"))
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "x" * (2 * 2 ** 20), zip=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "text.png", pnginfo=text)
    assert probe_image(str(tmp_path / "text.png")).width == 40
    from pixels import read_image

    assert read_image(str(tmp_path / "text.png"))[0].shape == (30, 40, 3)


# --- 13: locks and the probe --------------------------------------------------------------------


def test_a_commit_lock_whose_owner_is_gone_is_taken_over_at_once(tmp_path):
    import subprocess
    import sys

    from scoring.outputs import RunWriter

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "run"
    for pid, taken in ((int(gone.stdout), True), (os.getpid(), False)):
        writer = RunWriter(str(out), overwrite=True)
        writer.check()
        writer.write("detections.json", b"{}")
        out.mkdir(exist_ok=True)
        (out / "_commit.lock").write_text(json.dumps({"run_id": "earlier", "time": time.time(),
                                                      "host": socket.gethostname(), "pid": pid}))
        if taken:
            writer.commit()
            assert (out / "_SUCCESS").exists() and not (out / "_commit.lock").exists()
        else:  # a live owner: a run committing now
            with pytest.raises(TilescanError, match="another run is committing its outputs there now"):
                writer.commit()
            writer.abort()
            os.remove(out / "_commit.lock")


@pytest.mark.azurite
def test_a_sas_token_that_may_write_but_not_delete_fails_the_probe_before_any_work(azurite, container,
                                                                                   monkeypatch):
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from localservices.azurite import ACCOUNT, KEY
    from scoring.outputs import RunWriter

    name, url = container
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    permissions = dict(read=True, write=True, list=True, create=True, add=True)
    options = {"account_name": ACCOUNT, "account_host": azurite.endpoint, "retry_total": 0}
    for delete in (False, True):
        sas = generate_account_sas(ACCOUNT, KEY, ResourceTypes(service=True, container=True, object=True),
                                   AccountSasPermissions(**permissions, delete=delete),
                                   expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        writer = RunWriter(f"{url}/run-{delete}", storage_options={**options, "sas_token": sas})
        writer.check()
        if delete:
            writer.probe()
        else:
            with pytest.raises(TilescanError, match="a SAS token needs the d permission") as caught:
                writer.probe()
            assert "\n" not in str(caught.value) and sas not in str(caught.value)


# --- 23: a collection over a finished run of one picture ---------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_a_collection_resumed_over_a_one_picture_run_keeps_none_of_its_files(spark, tmp_path, random_bundle_dir):
    folder = noise_folder(tmp_path, [f"p{k}" for k in range(2)])
    out = tmp_path / "run"
    common = ["--out", str(out), "--model", random_bundle_dir, "--quiet"]
    assert spark.sparkContext.master == "local[2]"
    assert score.main(["--image", str(folder / "p0.png"), *common]) == 0
    assert (out / "overlay.png").exists() and (out / "windows.parquet").exists()
    assert score.main(["--image", str(folder), *common, "--resume"]) == 0
    assert not (out / "overlay.png").exists() and not (out / "windows.parquet").exists()
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["counts"]["scored"] == 2 and (out / "p0" / "_SUCCESS").exists()


# --- 25: symbolic links are followed, special files said -----------------------------------------


def test_linked_pictures_are_scored_and_linked_files_uploaded(tmp_path, caplog):
    from core.transfer import transfer

    folder = tmp_path / "in"
    folder.mkdir()
    write_noise_png(tmp_path / "elsewhere.png", 64, 48)
    os.symlink(tmp_path / "elsewhere.png", folder / "linked.png")
    os.mkfifo(folder / "pipe.png")
    assert [os.path.basename(u) for u in resolve_inputs(str(folder)).urls] == ["linked.png"]
    assert [os.path.basename(u) for u in resolve_inputs(str(folder / "*.png")).urls] == ["linked.png"]
    transfer(str(folder), str(tmp_path / "copy"))
    assert sorted(os.listdir(tmp_path / "copy")) == ["linked.png"]
    assert open(tmp_path / "copy" / "linked.png", "rb").read() == open(tmp_path / "elsewhere.png", "rb").read()
    assert "skipped 1 entries that are not files" in caplog.text


@pytest.mark.slow
@pytest.mark.spark
def test_resume_with_changed_list_attributes_keeps_the_run_and_its_pictures_in_agreement(spark, tmp_path,
                                                                                        random_bundle_dir):
    noise_folder(tmp_path, ["p0", "p1"])
    listed = tmp_path / "list.csv"
    listed.write_text("path,site\nin/p0.png,north\nin/p1.png,south\n")
    out = tmp_path / "run"
    common = ["--images", str(listed), "--out", str(out), "--model", random_bundle_dir, "--quiet"]
    assert spark.sparkContext.master == "local[2]"
    assert score.main(common) == 0
    listed.write_text("path,site\nin/p0.png,east\nin/p1.png,south\n")
    assert score.main([*common, "--resume"]) == 0
    entries = {e["name"]: e for e in json.load(open(out / "manifest.json"))["pictures"]}
    own = json.load(open(out / "p0" / "manifest.json"))
    assert entries["p0"]["attributes"] == own["attributes"] == {"site": "north"}
    assert "the list now gives {'site': 'east'}" in entries["p0"]["note"]


# --- 15: a Python worker that crashes ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("crash_on, code", [("p1-once", 0), ("p1", 3)], ids=["crashes-once", "keeps-crashing"])
def test_a_crashed_python_worker_is_retried_and_a_picture_that_keeps_crashing_fails_alone(crash_on, code,
                                                                                          tmp_path, random_bundle_dir):
    import subprocess
    import sys

    from core.project import ROOT, project_path

    faults = os.path.join(ROOT, "tests", "executor_faults")
    folder = noise_folder(tmp_path, ["p0", "p1", "p2"], seeded=False)
    crash = "export TILESCAN_TEST_CRASH_ON=/p1.png\n"
    if crash_on == "p1-once":  # only the first worker to open p1 dies: the retry finds the marker
        crash += f'export TILESCAN_TEST_CRASH_MARKER="{tmp_path / "crashed-once"}"\n'
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\n{crash}"
                       f'PYTHONPATH="{faults}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "run"
    env = {**os.environ, "PYSPARK_PYTHON": str(wrapper), "SPARK_CONF_DIR": project_path("conf"),
           "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "app", "score.py"), "--image", str(folder), "--out",
                           str(out), "--model", random_bundle_dir, "--quiet", "--strips", "1"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=400)
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Py4JJavaError" not in done.stderr, done.stderr[-3000:]
    assert " ERROR " not in done.stderr and "\tat " not in done.stderr, done.stderr[-3000:]  # no page of traces
    manifest = json.load(open(out / "manifest.json"))
    status = {e["name"]: e["status"] for e in manifest["pictures"]}
    assert status == {"p0": "scored", "p1": "scored" if code == 0 else "failed", "p2": "scored"}
    if code:
        failed = next(e for e in manifest["pictures"] if e["name"] == "p1")
        assert failed["error"].startswith("its Spark task failed every attempt:") and "crashed" in failed["error"]
        assert done.stderr.strip().splitlines()[-1].startswith(f"failed: {folder / 'p1.png'}: its Spark task failed")


# --- 20: the session stopped under a run -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_a_session_stopped_while_score_images_runs_is_one_error_and_no_success(spark_for, tmp_path,
                                                                             random_bundle_dir):
    from scoring.api import score_images
    from scoring.outputs import SUCCESS

    session = spark_for("local[1]")
    picture = write_noise_png(tmp_path / "big.png", 1500, 1500, seed=5)
    sc = session.sparkContext

    def stop_when_running():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not sc.statusTracker().getActiveJobsIds():
            time.sleep(0.05)
        time.sleep(0.5)
        session.stop()

    stopper = threading.Thread(target=stop_when_running, daemon=True)
    stopper.start()
    out = tmp_path / "run"
    with pytest.raises(TilescanError, match="the Spark session was stopped while the run went on") as caught:
        score_images(session, [picture], str(out), model=random_bundle_dir, stride=4, quiet=True)
    stopper.join(10)
    from tests import conftest

    conftest._active.pop("spark", None)  # stopped: the next test that asks for a session gets a new one
    assert "\n" not in str(caught.value)
    assert not (out / SUCCESS).exists() and not (out / "big" / SUCCESS).exists()


# --- 16, 17: two runs into one folder at once -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("overwrite", [False, True], ids=["fresh-folder", "both-overwrite"])
def test_two_runs_into_one_folder_at_once_never_mix_nor_delete_each_other(overwrite, spark, tmp_path,
                                                                          random_bundle_dir):
    from core.errors import OutputExistsError
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare, run

    folder = noise_folder(tmp_path, [f"p{k}" for k in range(3)])
    out = tmp_path / "run"
    assert spark.sparkContext.master == "local[2]"
    if overwrite:  # a finished run both replace
        assert score.main(["--image", str(folder), "--out", str(out), "--model", random_bundle_dir, "--quiet"]) == 0

    def params(threshold):
        return ScoreParams(image=str(folder), out=str(out), model=random_bundle_dir, threshold=threshold,
                           overwrite=overwrite, quiet=True, keep=0.0)

    late = prepare(params(0.9))  # started first...
    early = prepare(params(0.5))
    winner = run(early, spark)  # ...but the other commits first
    parts = {k: out / "windows" / f"image=p{k}" / "part-00000.parquet" for k in range(3)}
    written = {k: os.stat(part).st_mtime_ns for k, part in parts.items()}
    with pytest.raises(OutputExistsError, match="another run finished there while this one ran"):
        run(late, spark)
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["run_id"] == winner["run_id"] == early.run_id and manifest["counts"]["scored"] == 3
    for k in range(3):
        own = json.load(open(out / f"p{k}" / "manifest.json"))
        assert own["run_id"] == early.run_id and own["parameters"]["thresholds"] == {"car": 0.5, "boat": 0.5}
        assert os.stat(parts[k]).st_mtime_ns == written[k]  # the winner's windows: the other never wrote them
    assert (out / "_SUCCESS").exists()


# --- 14: the destination removed under a run -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_a_destination_removed_while_the_run_goes_on_is_named_and_its_finished_pictures_kept(spark, tmp_path,
                                                                                            random_bundle_dir):
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare, run

    folder = noise_folder(tmp_path, [f"p{k}" for k in range(3)])
    out = tmp_path / "run"
    assert spark.sparkContext.master == "local[2]"
    prepared = prepare(ScoreParams(image=str(folder), out=str(out), model=random_bundle_dir, quiet=True))
    shutil.rmtree(out)  # the container deleted: the pictures' commits make the folder again
    with pytest.raises(StorageError, match=r"was removed while this run went on \(its _tilescan marker is gone\)"):
        run(prepared, spark)
    assert all((out / f"p{k}" / "_SUCCESS").exists() for k in range(3)) and not (out / "_SUCCESS").exists()
    resumed = run(prepare(ScoreParams(image=str(folder), out=str(out), model=random_bundle_dir, quiet=True,
                                      resume=True)), spark)
    assert resumed["counts"]["skipped"] == 3 and (out / "_SUCCESS").exists()
