"""score.py against the Azurite emulator: az:// in and out, equal to a local run; an outage
while writing leaves no _SUCCESS; bad input gives one-line errors with no secret in them."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from app import score
from core import storage
from core.project import ROOT
from core.transfer import transfer
from localservices.azurite import ACCOUNT, AZURE_ENV, KEY
from scoring.outputs import MARKER, OUTPUT_FILES, SUCCESS, RunWriter
from scoring.params import ScoreParams
from tests.conftest import write_noise_png

pytestmark = pytest.mark.azurite

WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="
RUN = ["--strips", "4", "--keep", "0", "--threshold", "0.34", "--quiet"]
FAST_FAIL = ["--storage-option", "retry_total=0", "--storage-option", "initial_backoff=0",
             "--storage-option", "random_jitter_range=0"]


@pytest.fixture(scope="module")
def lake_inputs(azurite, small_image, random_bundle_dir):
    """A container holding the picture (``in/small.png``) and the bundle (``models/random``)."""
    name = azurite.create_container()
    options = {"connection_string": azurite.connection_string()}
    for src, dest in ((small_image, f"az://{name}/in/small.png"), (random_bundle_dir, f"az://{name}/models/random")):
        assert transfer(src, dest, threads=4, storage_options=options, progress=False).ok
    return {"container": name, "url": f"az://{name}", "image": f"az://{name}/in/small.png",
            "model": f"az://{name}/models/random", "local_image": small_image}


@pytest.fixture(scope="module")
def local_run(spark, small_image, random_bundle_dir, tmp_path_factory):
    """The same run on local files, in this process: what the lake runs must reproduce."""
    from scoring.pipeline import prepare, run

    out = tmp_path_factory.mktemp("local") / "run"
    params = ScoreParams(image=small_image, out=str(out), model=random_bundle_dir, strips=4, keep=0.0,
                         threshold={"*": 0.34}, quiet=True)
    run(prepare(params), spark)
    return {name: (out / name).read_bytes() for name in OUTPUT_FILES}


def run_outputs(azurite, container: str, prefix: str) -> dict:
    return {k[len(prefix) + 1:]: v for k, v in azurite.blobs(container, prefix + "/").items()}


def lake_env(connection_string: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in AZURE_ENV}
    env["AZURE_STORAGE_CONNECTION_STRING"] = connection_string
    return env


def score_process(*args, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "app", "score.py"), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def without_viewer_folder(names) -> set:
    """The run's files but those of its viewer's folder (``viewer-<run>/``: tiles and script)."""
    return {name for name in names if not any(part.startswith("viewer-") for part in name.split("/"))}


def assert_same_as_local(got: dict, local: dict) -> None:
    assert without_viewer_folder(got) == {*OUTPUT_FILES, SUCCESS, MARKER, "viewer.html"}
    assert any(name.startswith("viewer-") and name.endswith("/tiles.dzi") for name in got)
    rows = pq.read_table(io.BytesIO(got["windows.parquet"])).to_pylist()
    assert rows == pq.read_table(io.BytesIO(local["windows.parquet"])).to_pylist() and len(rows) == 150
    detections, want = json.loads(got["detections.json"]), json.loads(local["detections.json"])
    assert detections["annotations"], "the comparison needs boxes: lower --threshold"
    assert detections == want
    assert got["overlay.png"] == local["overlay.png"]
    manifest, local_manifest = json.loads(got["manifest.json"]), json.loads(local["manifest.json"])
    assert manifest["counts"] == local_manifest["counts"]
    assert manifest["model"]["sha256"] == local_manifest["model"]["sha256"]
    for key in ("width", "height", "format", "mode", "bit_depth", "converted"):
        assert manifest["input"][key] == local_manifest["input"][key]
    paths = ("image", "out", "model")
    assert ({k: v for k, v in manifest["parameters"].items() if k not in paths}
            == {k: v for k, v in local_manifest["parameters"].items() if k not in paths})


@pytest.mark.slow
@pytest.mark.parametrize("model_on", ["local", "lake"])
@pytest.mark.spark
def test_score_reads_and_writes_the_lake(model_on, azurite, lake_inputs, local_run, random_bundle_dir):
    model = lake_inputs["model"] if model_on == "lake" else random_bundle_dir
    out = f"model-{model_on}"
    proc = score_process("--master", "local[2]", "--image", lake_inputs["image"], "--model", model,
                         "--out", f"{lake_inputs['url']}/{out}", *RUN, env=lake_env(azurite.connection_string()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = run_outputs(azurite, lake_inputs["container"], out)
    assert_same_as_local(got, local_run)
    manifest = json.loads(got["manifest.json"])
    lake_storage = {"protocol": "az", "credentials": "AZURE_STORAGE_CONNECTION_STRING", "account": ACCOUNT}
    assert manifest["storage"]["image"] == manifest["storage"]["out"] == lake_storage
    assert manifest["storage"]["model"]["protocol"] == ("az" if model_on == "lake" else "file")
    assert KEY not in got["manifest.json"].decode() and KEY not in proc.stderr + proc.stdout


@pytest.mark.slow
@pytest.mark.spark
def test_a_glob_on_the_lake_scores_each_match_as_alone(spark, azurite, azure_env, lake_inputs, local_run, tmp_path,
                                                      capsys, random_bundle_dir):
    folder = tmp_path / "glob"
    folder.mkdir()
    (folder / "a.png").write_bytes(open(lake_inputs["local_image"], "rb").read())
    write_noise_png(folder / "b.png", 120, 70, seed=9)
    (folder / "notes.txt").write_text("not a match")
    url = lake_inputs["url"]
    assert transfer(str(folder), f"{url}/glob", threads=2, progress=False).ok
    code = score.main(["--image", f"{url}/glob/*.png", "--out", f"{url}/glob-run", "--model", random_bundle_dir,
                       "--master", spark.sparkContext.master, *RUN])
    assert code == 0, capsys.readouterr().err
    got = run_outputs(azurite, lake_inputs["container"], "glob-run")
    manifest = json.loads(got["manifest.json"])
    assert [(p["name"], p["url"], p["status"]) for p in manifest["pictures"]] == [
        ("a", f"{url}/glob/a.png", "scored"), ("b", f"{url}/glob/b.png", "scored")]
    alone = {name[len("a/"):]: data for name, data in got.items() if name.startswith("a/")}
    # its windows: in the dataset
    assert without_viewer_folder(alone) == {*OUTPUT_FILES, SUCCESS, MARKER, "viewer.html"} - {"windows.parquet"}
    assert json.loads(alone["manifest.json"])["windows"] == "../windows/image=a/part-00000.parquet"

    def rows(data):  # the band (strip) a window was scored in depends on the plan, not its scores
        return [{k: v for k, v in row.items() if k != "strip"} for row in pq.read_table(io.BytesIO(data)).to_pylist()]

    assert rows(got["windows/image=a/part-00000.parquet"]) == rows(local_run["windows.parquet"])
    assert json.loads(alone["detections.json"])["annotations"] == \
        json.loads(local_run["detections.json"])["annotations"]
    assert alone["overlay.png"] == local_run["overlay.png"]
    assert {SUCCESS, "detections.json", "windows/image=a/part-00000.parquet",
            "windows/image=b/part-00000.parquet"} <= set(got)
    assert not [name for name in got if name.endswith("windows.parquet")]  # one copy each

    # Resumed on the lake after a run that stopped before b was finished.
    fs, root = storage.filesystem(f"{url}/glob-run")
    fs.rm([f"{root}/b", f"{root}/{SUCCESS}"], recursive=True)
    code = score.main(["--image", f"{url}/glob/*.png", "--out", f"{url}/glob-run", "--model", random_bundle_dir,
                       "--master", spark.sparkContext.master, *RUN, "--resume"])
    assert code == 0, capsys.readouterr().err
    resumed = run_outputs(azurite, lake_inputs["container"], "glob-run")
    assert [p["status"] for p in json.loads(resumed["manifest.json"])["pictures"]] == ["skipped", "scored"]
    assert json.loads(resumed["detections.json"])["annotations"] == json.loads(got["detections.json"])["annotations"]
    assert resumed["windows/image=a/part-00000.parquet"] == got["windows/image=a/part-00000.parquet"]


@pytest.mark.slow
def test_a_filesystem_travels_to_executors(spark, azurite, lake_inputs, small_image):
    fs, path = storage.filesystem(lake_inputs["image"], {"connection_string": azurite.connection_string()})
    sizes = spark.sparkContext.parallelize([path, path], 2).map(lambda p: len(fs.cat_file(p))).collect()
    assert sizes == [os.path.getsize(small_image)] * 2
    assert not [k for k, v in spark.sparkContext.getConf().getAll() if KEY in v]


@pytest.fixture
def outage(azurite):
    """Yields a function that stops the emulator; afterwards it is running again, same port and data."""
    yield azurite.stop
    azurite.start()
    from adlfs import AzureBlobFileSystem

    # Cached filesystems hold connections to the stopped process and the tests' retry settings.
    AzureBlobFileSystem.clear_instance_cache()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["write", "commit"])
def test_outage_while_writing_leaves_no_success(stage, spark, azurite, azure_env, outage, lake_inputs,  # noqa: F811
                                                 random_bundle_dir, monkeypatch, capsys):
    patched = "write" if stage == "write" else "_move"
    original = getattr(RunWriter, patched)

    def then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)
        outage()  # after the first file: the rest fails

    monkeypatch.setattr(RunWriter, patched, then_stop)
    out = f"{lake_inputs['url']}/outage-{stage}"
    args = ["--master", "local[2]", "--image", lake_inputs["image"], "--model", random_bundle_dir, "--out", out,
            *RUN, *FAST_FAIL]
    code = score.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"error: cannot {'write' if stage == 'write' else 'commit the outputs to'} {out}")
    assert "storage unreachable" in err[-1] and KEY not in "\n".join(err)

    azurite.start()
    left = run_outputs(azurite, lake_inputs["container"], f"outage-{stage}")
    assert left and SUCCESS not in left
    # What a failed run staged, and its viewer's folder (written in place), stay while the storage
    # is down: no page and no _SUCCESS refer to them, and the next commit there removes them.
    finished = sorted(name for name in left if not name.startswith(("_temporary-", "viewer-")))
    # Cut off during the commit: the first file moved, the lock it could not let go of; no
    # manifest describing files it did not write, and no _SUCCESS.
    assert finished == ([] if stage == "write" else ["_commit.lock", MARKER, "windows.parquet"])

    if stage == "commit":  # the same destination works again once the storage is back
        monkeypatch.undo()
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string())
        from adlfs import AzureBlobFileSystem

        AzureBlobFileSystem.clear_instance_cache()
        assert score.main(args) == 2  # the failed run's lock is young: it might be another run committing
        assert "another run is committing its outputs there now" in capsys.readouterr().err
        monkeypatch.setattr("scoring.outputs._STALE_LOCK_S", 0)  # as five minutes later
        assert score.main(args) == 0
        names = set(run_outputs(azurite, lake_inputs["container"], f"outage-{stage}"))
        assert without_viewer_folder(names) == {*OUTPUT_FILES, SUCCESS, MARKER, "viewer.html"}
        assert len({name.split("/")[0] for name in names if name.startswith("viewer-")}) == 1  # the failed run's went


def bad_input_case(case, lake_inputs, bundle, tmp_path, endpoint):
    """``(arguments, message)`` for one kind of bad input."""
    url = lake_inputs["url"]
    image, model, out, extra = lake_inputs["image"], bundle, f"{url}/bad-{case}", []
    if case == "missing blob":
        image, message = f"{url}/in/nope.png", f"image not found: {url}/in/nope.png"
    elif case == "missing container":
        image, message = "az://no-such-container/x.png", "image not found: az://no-such-container/x.png"
    elif case == "missing bundle":
        model, message = f"{url}/models/nope", f"model bundle not found: {url}/models/nope has no model.json"
    elif case == "malformed URL":
        image, message = image.replace("az://", "az:/"), "malformed URL az:/"
    elif case == "bad container name":
        out, message = "az://Results_2024/run", "'Results_2024' is not a valid container name"
    elif case == "adl":
        image, message = "adl://store.azuredatalakestore.net/x.png", "Gen1, retired on 29 February 2024"
    elif case == "secret on the command line":
        extra, message = ["--storage-option", f"account_key={WRONG_KEY}"], "secrets do not belong on the command line"
    elif case == "wrong key":
        options = tmp_path / "storage.json"
        # account_host: the emulator is plain http on a port
        options.write_text(json.dumps({"account_name": ACCOUNT, "account_key": WRONG_KEY, "account_host": endpoint}))
        extra, message = ["--storage-options-file", str(options)], "access denied (AuthorizationFailure)"
    else:
        raise ValueError(case)
    return ["--image", image, "--model", model, "--out", out, *extra, *FAST_FAIL], message


@pytest.mark.parametrize("case", ["missing blob", "missing container", "missing bundle", "malformed URL",
                                  "bad container name", "adl", "secret on the command line", "wrong key"])
def test_bad_input_is_one_line_without_secrets(case, azurite, azure_env, lake_inputs, random_bundle_dir,  # noqa: F811
                                               tmp_path, capsys):
    args, message = bad_input_case(case, lake_inputs, random_bundle_dir, tmp_path, azurite.endpoint)
    code = score.main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert WRONG_KEY not in err and KEY not in err
    assert not run_outputs(azurite, lake_inputs["container"], f"bad-{case}")


def test_wrong_key_through_a_real_process(azurite, lake_inputs, random_bundle_dir):
    proc = score_process("--image", lake_inputs["image"], "--model", random_bundle_dir, "--out",
                         f"{lake_inputs['url']}/wrong-key", *FAST_FAIL,
                         env=lake_env(azurite.connection_string(WRONG_KEY)), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot read {lake_inputs['image']}: access denied (AuthorizationFailure): "
        "check the account key, SAS token or identity (docs/azure.md)"]
    assert WRONG_KEY not in proc.stderr + proc.stdout
