"""The cases a probe of bad inputs and faults found: each ends in one `error:` line and exit 2,
with nothing half written, or is handled as a user expects (issue 14, items 1 to 10)."""
from __future__ import annotations

import errno
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from app import collage, demo, lake, score
from core.errors import TilescanError
from core.project import ROOT
from localservices.azurite import AZURE_ENV
from localservices.ports import free_ports
from scoring.job import check_master
from scoring.outputs import MARKER, SUCCESS, RunWriter
from tests.conftest import write_noise_png
from tests.test_pixels import flat_png, png_header_only

COMMON = ["--threshold", "0.34", "--keep", "0", "--quiet"]


def run_cli(main, capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err.strip()


def assert_one_line(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and message in err, err
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize("module", [
    *(f"app.{name}" for name in ("collage", "demo", "evaluate", "evaluate_model", "lake", "quantize", "score", "train",
                                 "train_detector", "validate_int8")),
    *(f"benchmarks.{name}" for name in ("baseline", "breakdown", "collection", "cpus", "dense", "end_to_end", "engine",
                                        "machine", "memory", "merge", "quantize", "report", "run_all", "scaling")),
])
def test_every_command_names_how_it_is_run(module, capsys):
    """Usage lines (and argparse's own errors) show the command a user types, not a file name."""
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    run_as = "score.py" if module == "app.score" else f"python -m {module}"
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {run_as} ")


@pytest.mark.parametrize("module", [f"app.{name}" for name in ("collage", "demo", "evaluate", "evaluate_model", "lake",
                                                                "quantize", "score", "train", "train_detector",
                                                                "validate_int8")])
def test_every_command_prints_its_version(module, capsys):
    import importlib.metadata as md

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])  # before the required options are asked for
    assert exit_.value.code == 0
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = f" (commit {head[:12]})" if head else ""  # none outside a checkout
    assert capsys.readouterr().out == f"tilescan {md.version('tilescan')}{commit}\n"


def files_under(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names)


# --- 1. lake download stays inside its folder -------------------------------------------------

def test_download_never_writes_outside_its_folder(tmp_path, capsys, azurite, container):
    name, url = container
    with azurite.service() as service:
        client = service.get_container_client(name)
        client.upload_blob("x_esc.txt", b"outside")
        client.upload_blob("d1/d2/d3/pkg/ok.txt", b"inside")
        client.upload_blob("d1/d2/d3/pkg/s\\..\\..\\..\\..\\..\\x_esc.txt", b"escaped")
    dest = tmp_path / "a" / "b" / "c" / "d" / "dest"
    code, err = run_cli(lake.main, capsys, "download", f"{url}/d1/d2/d3/pkg", str(dest), "--quiet")
    assert_one_line(code, err, "its name leads outside")
    assert "nothing was copied" in err
    assert files_under(tmp_path) == []


# --- 2. a container that does not exist is created --------------------------------------------

def test_upload_into_a_new_container_creates_it(tmp_path, capsys, azurite, azure_env):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_bytes(b"a")
    (tmp_path / "src" / "sub" / "b.txt").write_bytes(b"bb")
    fresh = f"new{os.getpid()}upload"
    code = lake.main(["upload", str(tmp_path / "src"), f"az://{fresh}/run", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert azurite.blobs(fresh) == {"run/a.txt": b"a", "run/sub/b.txt": b"bb"}


@pytest.mark.slow
@pytest.mark.spark
def test_score_into_a_new_container_creates_it(spark, capsys, azurite, azure_env, small_image, random_bundle_dir):
    fresh = f"new{os.getpid()}score"
    code = score.main(["--image", small_image, "--out", f"az://{fresh}/run", "--model", random_bundle_dir,
                       "--master", spark.sparkContext.master, *COMMON])
    assert code == 0, capsys.readouterr().err
    assert {"run/_SUCCESS", "run/manifest.json", "run/windows.parquet"} <= set(azurite.blobs(fresh))


def tile_library(folder, per_class: int):
    """A folder-per-class library of random 32x32 tiles, as ``app.collage --library`` reads it."""
    rng = np.random.default_rng(0)
    for label in ("car", "boat", "background"):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / label / f"{i}.png")
    return folder


def test_collage_into_a_new_container_creates_it(tmp_path, capsys, azurite, azure_env, small_image):
    library = tile_library(tmp_path / "tiles", 1)
    fresh = f"new{os.getpid()}collage"
    code = collage.main(["--target", small_image, "--library", str(library), "--out", f"az://{fresh}/collage",
                         "--width", "64", "--height", "64", "--max-uses", "20"])
    assert code == 0, capsys.readouterr().err
    assert {"collage/collage.png", "collage/ground_truth.json", "collage/collage.json"} <= set(azurite.blobs(fresh))


# --- 3. pictures over Pillow's own bomb guard --------------------------------------------------

def test_a_header_claiming_a_huge_picture_is_one_line_before_spark(tmp_path, capsys, random_bundle_dir, no_spark):
    image = png_header_only(tmp_path / "claims.png", 15000, 15000)
    out = tmp_path / "run"
    code, err = run_cli(score.main, capsys, "--image", image, "--out", str(out), "--model", random_bundle_dir)
    assert_one_line(code, err, "cannot hold its 15000x15000 pixels")
    assert not out.exists()
    code, err = run_cli(collage.main, capsys, "--target", image, "--out", str(tmp_path / "collage"))
    assert_one_line(code, err, "cannot hold its 15000x15000 pixels")


def test_an_empty_collage_target_is_refused_not_taken_as_the_default(tmp_path, capsys):
    code, err = run_cli(collage.main, capsys, "--target", "", "--out", str(tmp_path / "collage"))
    assert_one_line(code, err, "a path or URL is required, got ''")
    assert not (tmp_path / "collage").exists()


def test_a_collage_over_a_225_megapixel_target(tmp_path, capsys):
    target = flat_png(tmp_path / "big.png", 15000, 15000)
    library = tile_library(tmp_path / "tiles", 4)
    out = tmp_path / "collage"
    code = collage.main(["--target", target, "--library", str(library), "--out", str(out), "--width", "256",
                         "--max-uses", "20"])
    assert code == 0, capsys.readouterr().err
    summary = json.load(open(out / "collage.json"))
    assert summary["target_size"] == [15000, 15000]
    assert Image.open(out / "collage.png").size == (256, 256)


def test_a_library_too_small_for_the_collage_is_one_line_before_anything_is_written(tmp_path, capsys, small_image):
    library = tile_library(tmp_path / "tiles", 2)
    out = tmp_path / "collage"
    code, err = run_cli(collage.main, capsys, "--target", small_image, "--library", str(library), "--out", str(out),
                        "--width", "480", "--height", "480")
    assert_one_line(code, err, "`max_uses` (8) x 6 library tiles is fewer than the 400 placements of a 480x480 collage")
    assert not out.exists()


@pytest.mark.parametrize("options, message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--ou", "elsewhere"], "the demo sets score.py's --image and --out itself"),
    (["--stride", "0"], "--stride must be >= 1, got 0"),
])
def test_bad_demo_score_options_fail_before_anything_is_built(options, message, tmp_path, capsys):
    work = tmp_path / "demo"
    try:
        code = demo.main(["--work", str(work), "--", *options])
    except SystemExit as exit_:  # argparse's own error, as score.py gives it
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err
    assert not work.exists()


def test_a_demo_work_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "work").write_text("")
    code, err = run_cli(demo.main, capsys, "--work", str(tmp_path / "work"))
    assert_one_line(code, err, "is a file, not a folder")


def test_a_failed_demo_scoring_is_one_line_with_its_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(demo, "spark_submit_executable", lambda: shutil.which("false"))
    with pytest.raises(demo.DemoFailed) as failed:
        demo.score(["--image", "x"])
    assert failed.value.exit_code == 1
    assert str(failed.value) == "scoring failed: spark-submit exited with code 1 (its reason is above)"


# --- 4. bundle errors -------------------------------------------------------------------------

def broken_bundle(src, dest, case: str) -> str:
    shutil.copytree(src, dest)
    path = os.path.join(dest, "model.json")
    doc = json.load(open(path))
    if case == "list":
        doc = [doc]
    elif case == "entry_without_path":
        del doc["files"]["onnx"]["path"]
    elif case == "escaping_path":
        outside = os.path.join(os.path.dirname(dest), "outside.bin")
        open(outside, "wb").write(b"not the bundle's")
        import hashlib

        doc["files"]["onnx"] = {"path": "../outside.bin", "sha256": hashlib.sha256(b"not the bundle's").hexdigest()}
    elif case == "garbage_onnx":
        import hashlib

        garbage = b"this is not an ONNX graph" * 40
        open(os.path.join(dest, "model.onnx"), "wb").write(garbage)
        doc["files"]["onnx"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    json.dump(doc, open(path, "w"))
    return str(dest)


@pytest.mark.parametrize("case, message", [
    ("list", "must be a JSON object, got a list"),
    ("entry_without_path", "files.onnx must have a `path` and a `sha256`"),
    ("escaping_path", "path '../outside.bin' must name a file inside the bundle"),
    ("garbage_onnx", "the onnxruntime engine cannot load onnx"),
])
def test_a_broken_bundle_is_one_line_before_spark(case, message, tmp_path, capsys, small_image, random_bundle_dir,
                                                 no_spark):
    model = broken_bundle(random_bundle_dir, tmp_path / "bundle", case)
    out = tmp_path / "run"
    code, err = run_cli(score.main, capsys, "--image", small_image, "--out", str(out), "--model", model)
    assert_one_line(code, err, message)
    assert not out.exists()


# --- 5. the destination is probed before Spark ------------------------------------------------

@pytest.mark.parametrize("code_name", ["ENOSPC", "EROFS"])
def test_an_unwritable_destination_fails_before_spark(code_name, tmp_path, capsys, monkeypatch, small_image,
                                                      random_bundle_dir, no_spark):
    from fsspec.implementations.local import LocalFileSystem

    number = getattr(errno, code_name)

    def refuse(self, path, value, **kwargs):
        raise OSError(number, os.strerror(number), path)

    monkeypatch.setattr(LocalFileSystem, "pipe_file", refuse)
    out = tmp_path / "run"
    code, err = run_cli(score.main, capsys, "--image", small_image, "--out", str(out), "--model", random_bundle_dir)
    assert_one_line(code, err, f"cannot write {out}")
    assert os.strerror(number) in err
    assert not out.exists()


@pytest.mark.parametrize("where", ["full_disk", "below_a_file"])
def test_an_unwritable_collage_destination_fails_before_the_build(where, tmp_path, capsys, monkeypatch, small_image):
    from fsspec.implementations.local import LocalFileSystem

    def refuse(*args, **kwargs):
        raise AssertionError("the collage was built for a destination it cannot be written to")

    def full_disk(self, path, value, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(importlib.import_module("collage.make"), "build_collage", refuse)
    if where == "full_disk":
        monkeypatch.setattr(LocalFileSystem, "pipe_file", full_disk)
        out, message = tmp_path / "collage", f"cannot write {tmp_path / 'collage'}/.tilescan-probe-"
    else:
        (tmp_path / "a-file").write_bytes(b"not a folder")
        out, message = tmp_path / "a-file" / "collage", "it or a folder above it is a file"
    code, err = run_cli(collage.main, capsys, "--target", small_image, "--library",
                        str(tile_library(tmp_path / "tiles", 1)), "--out", str(out), "--width", "64", "--height", "64")
    assert_one_line(code, err, message)
    assert not out.exists()


@pytest.mark.parametrize("command", ["score", "lake download"])
@pytest.mark.parametrize("where, reason", [
    ("below_a_file", "it or a folder above it is a file"),
    ("in_proc", "No such file or directory"),  # /proc takes no new folders
])
def test_a_destination_no_folder_can_be_made_at_is_one_line(command, where, reason, tmp_path, capsys, small_image,
                                                            random_bundle_dir, no_spark):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_bytes(b"not a folder")
    out = in_the_way / "run" if where == "below_a_file" else "/proc/tilescan-run"
    if command == "score":
        code, err = run_cli(score.main, capsys, "--image", small_image, "--out", str(out),
                            "--model", random_bundle_dir)
    else:
        code, err = run_cli(lake.main, capsys, "download", small_image, f"{out}/copy/")
    assert_one_line(code, err, f"cannot create {out}")
    assert reason in err
    assert in_the_way.read_bytes() == b"not a folder"


@pytest.mark.parametrize("option, message", [
    ("--image", "image not found: {path}"),
    ("--images", "--images list not found: {path}"),
    ("--model", "model bundle not found: {path}"),
])
def test_an_input_below_a_file_is_not_found(option, message, tmp_path, capsys, small_image, random_bundle_dir,
                                           no_spark):
    (tmp_path / "a-file").write_bytes(b"not a folder")
    path = str(tmp_path / "a-file" / "input")
    given = {"--image": small_image, "--model": random_bundle_dir, option: path}
    if option == "--images":
        del given["--image"]
    args = [a for pair in given.items() for a in pair]
    code, err = run_cli(score.main, capsys, *args, "--out", str(tmp_path / "run"))
    assert_one_line(code, err, message.format(path=path))
    assert not (tmp_path / "run").exists()


def _parquet_bytes(table) -> bytes:
    import io

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize("name, content, message", [
    ("list.txt", bytes(range(256)), "list.txt: not UTF-8 text (byte 0x80 at offset 128)"),
    ("list.csv", "path\n".encode() + bytes(range(128, 256)), "list.csv: not UTF-8 text (byte 0x80 at offset 5)"),
    ("list.parquet", b"PAR1 not a table PAR1", "list.parquet: not a readable Parquet file ("),
    ("list.parquet", "ints", "list.parquet: the `path` column must hold strings, it holds int64"),
    ("list.csv", b"file,label\nx.png,1\n", "list.csv: a CSV list needs a `path` column, it has ['file', 'label']"),
    ("list.csv", b"path,label\n,1\n", "list.csv: a row has no path"),
    ("scan.PNG", b"\x89PNG\r\n\x1a\n", "--images takes a list of pictures, {path} is a picture (use --image)"),
])
def test_a_list_that_is_no_list_is_one_line_before_spark(name, content, message, tmp_path, capsys,
                                                         random_bundle_dir, no_spark):
    import pyarrow as pa

    if content == "ints":
        content = _parquet_bytes(pa.table({"path": [1, 2]}))
    listed = tmp_path / name
    listed.write_bytes(content)
    code, err = run_cli(score.main, capsys, "--images", str(listed), "--out", str(tmp_path / "run"),
                        "--model", random_bundle_dir)
    assert_one_line(code, err, message.format(path=listed))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1:1/x.png",  # fsspec's FTP filesystem connects as it is made; nothing listens on port 1
    "zip://x.png::{tmp}/missing.zip",  # a chained URL opens its archive as it is made
])
def test_a_filesystem_that_cannot_be_made_is_one_line(url, tmp_path, capsys, random_bundle_dir, no_spark):
    url = url.format(tmp=tmp_path)
    code, err = run_cli(score.main, capsys, "--image", url, "--out", str(tmp_path / "run"),
                        "--model", random_bundle_dir)
    assert_one_line(code, err, f"cannot open {url}: ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("master, message", [
    ("foo", "--master 'foo' is not a Spark master URL"),
    ("local[]", "--master 'local[]' is not a Spark master URL"),
    ("spark://nohost", "'nohost' is not HOST:PORT"),
    ("spark://127.0.0.1:{port}", "no Spark master answers at 127.0.0.1:{port} ("),
])
def test_a_master_spark_cannot_use_is_one_line_before_spark(master, message, tmp_path, capsys, small_image,
                                                           random_bundle_dir, no_spark):
    port = free_ports(1)[0]  # nothing listens there: a standalone master that is not running
    master, message = master.format(port=port), message.format(port=port)
    out = tmp_path / "run"
    code, err = run_cli(score.main, capsys, "--image", small_image, "--out", str(out), "--model", random_bundle_dir,
                        "--master", master)
    assert_one_line(code, err, message)
    assert not out.exists()


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "local[*,3]", "local-cluster[2,1,1024]",
                                    "yarn", "k8s://https://127.0.0.1:6443", "spark://127.0.0.1:{port}",
                                    "spark://127.0.0.1:{closed},127.0.0.1:{port}"])
def test_masters_spark_takes_pass_the_check(master):
    with socket.create_server(("127.0.0.1", 0)) as listening:  # a standalone master, as far as a connection goes
        check_master(master.format(port=listening.getsockname()[1], closed=free_ports(1)[0]))


# --- 6. a run never replaces a finished run it was not told to replace ------------------------

def finished_run(out, run_id="theirs") -> dict:
    os.makedirs(out, exist_ok=True)
    files = {"manifest.json": json.dumps({"tool": "tilescan", "run_id": run_id}).encode(),
             "windows.parquet": b"their windows", SUCCESS: b""}
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)
    return files


def read_folder(out) -> dict:
    return {name: open(os.path.join(out, name), "rb").read() for name in files_under(out)}


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_run_that_finished_meanwhile_is_never_replaced(overwrite, spark, tmp_path, capsys, monkeypatch,
                                                         small_image, random_bundle_dir):
    import scoring.job

    out = tmp_path / "run"
    if overwrite:
        finished_run(out, "seen-at-start")
    real_run_job = scoring.job.run_job
    theirs = {}

    def job_then_another_run_finishes(*args, **kwargs):
        result = real_run_job(*args, **kwargs)
        shutil.rmtree(out, ignore_errors=True)
        theirs.update(finished_run(out, "finished-meanwhile"))
        return result

    monkeypatch.setattr(scoring.job, "run_job", job_then_another_run_finishes)
    code, err = run_cli(score.main, capsys, "--image", small_image, "--out", str(out), "--model", random_bundle_dir,
                        "--master", spark.sparkContext.master, *COMMON, *(["--overwrite"] if overwrite else []))
    assert_one_line(code, err, "another run finished there while this one ran; nothing was replaced")
    assert read_folder(out) == theirs


def test_of_two_concurrent_runs_only_the_first_commits(tmp_path):
    out = str(tmp_path / "run")
    first, second = RunWriter(out), RunWriter(out)
    first.check(), second.check()
    for writer, text in ((first, b"first"), (second, b"second")):
        writer.write("windows.parquet", text)
        writer.write("manifest.json", json.dumps({"tool": "tilescan", "run_id": writer.run_id}).encode())
    first.commit()
    with pytest.raises(Exception, match="another run finished there while this one ran"):
        second.commit()
    second.abort()
    assert read_folder(out)["windows.parquet"] == b"first"
    assert sorted(read_folder(out)) == sorted(["windows.parquet", "manifest.json", SUCCESS, MARKER])


def test_a_commit_waits_for_no_one_but_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    writer = RunWriter(str(out))
    writer.check()
    writer.write("windows.parquet", b"mine")
    (out / "_commit.lock").write_text(json.dumps({"run_id": "other", "time": time.time()}))
    with pytest.raises(Exception, match="another run is committing its outputs there now"):
        writer.commit()
    assert not (out / SUCCESS).exists()
    (out / "_commit.lock").write_text(json.dumps({"run_id": "killed", "time": time.time() - 2 * 3600}))
    writer.commit()
    assert (out / SUCCESS).exists() and not (out / "_commit.lock").exists()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_that_is_not_a_tilescan_run_is_refused(overwrite, tmp_path, capsys, small_image, random_bundle_dir,
                                                        no_spark):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"my": "own manifest"}))
    (out / "notes.txt").write_text("keep me")
    before = read_folder(out)
    code, err = run_cli(score.main, capsys, "--image", small_image, "--out", str(out), "--model", random_bundle_dir,
                        *overwrite)
    assert_one_line(code, err, "holds files that are not a tilescan run")
    assert read_folder(out) == before


# --- 7. an interrupted overwrite ---------------------------------------------------------------

def test_an_interrupted_overwrite_leaves_no_success_and_no_stale_manifest(tmp_path, monkeypatch):
    out = tmp_path / "run"
    finished_run(out, "old")
    writer = RunWriter(str(out), overwrite=True)
    writer.check()
    writer.write("windows.parquet", b"new windows")
    writer.write("overlay.png", b"new overlay")
    writer.write("manifest.json", json.dumps({"tool": "tilescan", "run_id": writer.run_id}).encode())
    moves = []
    real_mv = writer.fs.mv

    def outage_after_one_move(src, dest, **kwargs):
        if moves:
            raise OSError(errno.EIO, "storage went away")
        moves.append(dest)
        return real_mv(src, dest, **kwargs)

    monkeypatch.setattr(writer.fs, "mv", outage_after_one_move)
    with pytest.raises(Exception, match="storage went away"):
        writer.commit()
    monkeypatch.undo()
    left = read_folder(out)
    assert SUCCESS not in left and "manifest.json" not in left  # nothing claims to be finished or describes it
    assert any(name.startswith("_temporary-") for name in left)

    again = RunWriter(str(out))  # not finished, so no --overwrite needed
    again.check()
    again.write("windows.parquet", b"clean")
    again.write("manifest.json", json.dumps({"tool": "tilescan", "run_id": again.run_id}).encode())
    again.commit()
    assert sorted(read_folder(out)) == sorted(["windows.parquet", "manifest.json", SUCCESS, MARKER])


@pytest.mark.parametrize("removed", ["staging folder", "staged file", "whole output"])
def test_outputs_removed_while_a_run_writes_are_one_line(removed, tmp_path):
    out = tmp_path / "run"
    writer = RunWriter(str(out))
    writer.check()
    writer.write("windows.parquet", b"windows")
    staged = out / writer.staged["staging"]
    if removed == "staged file":
        (staged / "windows.parquet").unlink()
        with pytest.raises(TilescanError, match=rf"^cannot commit the outputs to {out}: {staged / 'windows.parquet'} "
                                                r"is gone \(removed while tilescan wrote\?\)$"):
            writer.commit()
    else:
        shutil.rmtree(staged if removed == "staging folder" else out)
        small = tmp_path / "small.json"
        small.write_bytes(b"{}")
        for write in (lambda: writer.write("manifest.json", b"{}"),
                      lambda: writer.write_file("extra.json", str(small))):
            with pytest.raises(TilescanError, match=r"^cannot write .*: its folder is gone \(removed while tilescan "
                                                    r"wrote\?\)$"):
                write()
    assert not (out / SUCCESS).exists()


# --- 8. secrets and unknown storage options ----------------------------------------------------

@pytest.mark.parametrize("pair, message", [
    ("AccountKey=c2VjcmV0a2V5", "secrets do not belong on the command line"),
    ("SharedAccessSignature=sv=1&sig=c2ln", "secrets do not belong on the command line"),
    ("colour=blue", "unknown storage option 'colour'"),
])
def test_storage_options_are_checked_before_spark(pair, message, tmp_path, capsys, monkeypatch, small_image,
                                                  random_bundle_dir, no_spark):
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    code, err = run_cli(score.main, capsys, "--image", small_image, "--out", "az://results/run", "--model",
                        random_bundle_dir, "--storage-option", "account_name=acct", "--storage-option", pair)
    assert_one_line(code, err, message)
    assert "c2VjcmV0a2V5" not in err and "c2ln" not in err


class QuietFiles(SimpleHTTPRequestHandler):
    """Serves a folder's files, whatever the query; its access log would go to stderr."""

    def log_message(self, *args):
        pass


def test_a_sas_in_a_listed_url_reaches_no_folder_name_message_or_file(spark, tmp_path, capsys, random_bundle_dir):
    secret = "c2FzU2lnbmF0dXJl"
    query = f"?sv=2024&sig={secret}&rscd=attachment;filename=x.png"
    # http.server answers no range requests: a picture smaller than one header read comes whole.
    (tmp_path / "served").mkdir()
    picture = flat_png(tmp_path / "served" / "flat.png", 64, 48)
    handler = functools.partial(QuietFiles, directory=str(tmp_path / "served"))
    server = ThreadingHTTPServer(("127.0.0.1", free_ports(1)[0]), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    served = f"http://127.0.0.1:{server.server_port}/flat.png{query}"
    failing = f"https://127.0.0.1:1/scans/x.png{query}"  # nothing listens on port 1
    (tmp_path / "list.txt").write_text(f"{failing}\n{served}\n")
    out = tmp_path / "run"
    try:
        code = score.main(["--images", str(tmp_path / "list.txt"), "--out", str(out), "--model", random_bundle_dir,
                           "--master", spark.sparkContext.master, *COMMON])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 3 and "failed: https://127.0.0.1:1/scans/x.png?sv=2024&sig=***" in err
    assert secret not in err
    pictures = json.load(open(out / "manifest.json"))["pictures"]
    # Names came from the URL's query, signature and all; COCO's file names held it too.
    assert [(p["name"], p["status"]) for p in pictures] == [("x", "failed"), ("flat", "scored")], err
    assert os.path.getsize(picture) < 1 << 16
    for path in files_under(out):
        assert secret not in path and secret.encode() not in (out / path).read_bytes(), path


# --- 9. what viewers show, frames and pages, strides past the window ---------------------------

@pytest.fixture(scope="module")
def unusual_pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unusual")
    base = np.asarray(Image.open(write_noise_png(folder / "base.png", 150, 90, seed=4)))
    os.remove(folder / "base.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.fromarray(base).save(folder / "rotated.jpg", quality=95, exif=exif)
    shown = np.asarray(Image.open(folder / "rotated.jpg").transpose(Image.Transpose.ROTATE_270))
    Image.fromarray(shown).save(folder / "shown.png")  # the same pixels, stored upright
    frames = [Image.fromarray(base), Image.fromarray(255 - base)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    import tifffile

    tifffile.imwrite(folder / "pages.tif", np.stack([base, 255 - base]))
    return folder


def test_headers_note_orientation_frames_and_pages(unusual_pictures):
    from pixels import probe_image

    rotated = probe_image(str(unusual_pictures / "rotated.jpg"))
    assert (rotated.width, rotated.height, rotated.orientation) == (90, 150, 6)
    assert "EXIF orientation 6 applied" in rotated.converted
    assert "first of 2 frames scored" in probe_image(str(unusual_pictures / "animated.gif")).converted
    assert "first of 2 pages scored" in probe_image(str(unusual_pictures / "pages.tif")).converted


@pytest.mark.slow
@pytest.mark.spark
def test_a_run_scores_what_viewers_show_and_says_what_it_left_out(spark, tmp_path, capsys, unusual_pictures,
                                                                  random_bundle_dir):
    out = tmp_path / "run"
    code = score.main(["--image", str(unusual_pictures), "--out", str(out), "--model", random_bundle_dir,
                       "--master", spark.sparkContext.master, "--stride", "40", "--threshold", "0.34", "--keep", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--stride 40 is larger than --window 32: bands of 8 pixels between windows are not scanned" in err
    run_manifest = json.load(open(out / "manifest.json"))
    assert any("not scanned" in note for note in run_manifest["notes"])
    rotated = pq.read_table(out / "windows" / "image=rotated" / "part-00000.parquet").to_pylist()
    shown = pq.read_table(out / "windows" / "image=shown" / "part-00000.parquet").to_pylist()
    assert rotated == shown and len(rotated) > 0
    notes = {name: json.load(open(out / name / "manifest.json"))["input"]["converted"] or ""
             for name in ("rotated", "animated", "pages")}
    assert "EXIF orientation 6 applied" in notes["rotated"]
    assert "first of 2 frames scored" in notes["animated"]
    assert "first of 2 pages scored" in notes["pages"]


# --- 10. a manifest that can reproduce the run, and Ctrl-C -------------------------------------

@pytest.mark.slow
@pytest.mark.spark
def test_the_manifest_records_what_reproduces_the_run(spark, tmp_path, capsys, monkeypatch, small_image,
                                                      random_bundle_dir):
    shutil.copy(small_image, tmp_path / "picture.png")
    monkeypatch.chdir(tmp_path)
    code = score.main(["--image", "picture.png", "--out", "run", "--model", os.path.relpath(random_bundle_dir),
                       "--master", spark.sparkContext.master, *COMMON])
    assert code == 0, capsys.readouterr().err
    manifest = json.load(open(tmp_path / "run" / "manifest.json"))
    parameters = manifest["parameters"]
    assert parameters["image"] == str(tmp_path / "picture.png")
    assert parameters["out"] == str(tmp_path / "run")
    assert manifest["model"]["source"] == random_bundle_dir
    assert manifest["input"]["bytes"] == os.path.getsize(small_image) and manifest["input"]["etag"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert manifest["commit"].startswith(head) and manifest["version"]
    assert manifest["spark"]["conf"]["spark.master"] == spark.sparkContext.master
    assert manifest["spark"]["driver_memory"]
    assert {"write_s", "spark_job_s", "merge_s"} <= set(manifest["timings_s"])


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("signum, code, line",
                         [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_is_one_line_and_its_exit_code(signum, code, line, tmp_path):
    image = write_noise_png(tmp_path / "big.png", 2500, 2500, seed=2)
    out = tmp_path / "run"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "app", "score.py"), "--image", image, "--out",
                             str(out), "--model", os.path.join(ROOT, "models", "classifier"), "--master", "local[1]",
                             "--stride", "8"], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines = []
    scoring_started = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("scoring:"):
                scoring_started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert scoring_started.wait(180), "".join(lines)[-3000:]
    zips = os.path.join(tempfile.gettempdir(), f"tilescan-py-{proc.pid}")
    assert os.path.isdir(zips)
    proc.send_signal(signum)
    exit_code = proc.wait(timeout=120)
    reader.join(timeout=10)
    err = "".join(lines)
    assert exit_code == code, err[-3000:]
    assert "Traceback" not in err and "Py4J" not in err
    assert err.rstrip().splitlines()[-1] == line
    assert not (out / SUCCESS).exists()
    assert not os.path.exists(zips)  # cleaned up as the process ended


def test_a_ctrl_c_just_before_the_job_is_submitted_still_stops_it(spark):
    """A slow driver can take the Ctrl-C between the progress line and the job's submission."""
    from scoring.job import cancel_on_interrupt

    sc = spark.sparkContext
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with cancel_on_interrupt(sc):
            os.kill(os.getpid(), signal.SIGINT)  # handled here, before the job below exists
            sc.parallelize(range(2), 2).foreach(lambda _: time.sleep(120))
    assert time.monotonic() - started < 60, "the job ran to its end: the Ctrl-C was lost"
