"""Storage: credentials in order, secrets redacted, URLs checked, pickling, atomic outputs on
Azurite, and the parallel upload/download command."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from app import cli, lake
from core import credentials, storage
from core.errors import StorageError
from core.project import ROOT
from core.redaction import redact
from core.transfer import transfer
from localservices.azurite import ACCOUNT, AZURE_ENV, KEY
from scoring.outputs import MARKER, SUCCESS, RunWriter

WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="


@pytest.fixture
def no_azure_env(monkeypatch):
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)


# --- redaction --------------------------------------------------------------------------

@pytest.mark.parametrize("text, secret", [
    (f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net", KEY),
    ("GET https://acct.blob.core.windows.net/c/x.png?sv=2024-05-04&se=2030&sig=Zm9vYmFy%2Bc2ln%3D failed", "Zm9vYmFy"),
    ("BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=1&sig=c2VjcmV0c2ln", "c2VjcmV0c2ln"),
    ("options {'account_name': 'acct', 'account_key': 'c2VjcmV0a2V5'}", "c2VjcmV0a2V5"),
    ("client_secret=dG9wc2VjcmV0 rejected", "dG9wc2VjcmV0"),
    ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "eyJhbGciOi"),
])
def test_redact_scrubs_secrets(text, secret):
    out = redact(ValueError(text))
    assert secret not in out and "***" in out


def test_redact_scrubs_secret_values_from_the_environment_in_any_form(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", "sv=2024&ss=b&sig=abcDEF123")
    assert "abcDEF123" not in redact("token 'sv=2024&ss=b&sig=abcDEF123' refused")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "plainkeyvalue")
    assert redact("the key plainkeyvalue!") == "the key ***!"


def test_redact_makes_one_short_line():
    out = redact(RuntimeError("Operation failed\nErrorCode:X\n" + "y" * 1000))
    assert "\n" not in out and len(out) <= 400 and out.startswith("Operation failed ErrorCode:X")


# --- URLs --------------------------------------------------------------------------------

@pytest.mark.parametrize("url, message", [
    ("adl://store.azuredatalakestore.net/x.png", "Gen1, retired on 29 February 2024; use ADLS Gen2: abfs://"),
    ("wasbs://c@acct.blob.core.windows.net/x", "use az://CONTAINER/PATH"),
    ("az:/images/x.png", "malformed URL az:/images/x.png: did you mean az://images/x.png?"),
    ("az://", "no container"),
    ("az:///x.png", "no container"),
    ("az://Bad_Name/x.png", "'Bad_Name' is not a valid container name"),
    ("abfs://images@/x.png", "expected abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH"),
    ("nosuchproto://x", "Protocol not known"),
])
def test_bad_urls_are_refused_with_the_form_to_use(url, message, no_azure_env):
    with pytest.raises(StorageError) as info:
        storage.filesystem(url, {"account_name": "acct"})
    assert message in str(info.value)


def test_local_paths_get_no_options():
    fs, path = storage.filesystem("/tmp/x.png", {"account_name": "acct"})
    assert fs.protocol[0] == "file" and path == "/tmp/x.png"


# --- credentials: explicit, then environment, then DefaultAzureCredential ----------------

ENV_CS = "DefaultEndpointsProtocol=https;AccountName=envacct;AccountKey=ZW52a2V5;EndpointSuffix=core.windows.net"


@pytest.mark.parametrize("explicit, environ, source, check", [
    ({"account_key": "ZXhwbGljaXQ="}, {"AZURE_STORAGE_CONNECTION_STRING": ENV_CS}, "account key (storage options)",
     lambda o: "AccountKey=ZXhwbGljaXQ=" in o["connection_string"] and "acct.blob.core" in o["connection_string"]),
    ({"sas_token": "?sv=1&sig=eA"}, {"AZURE_STORAGE_ACCOUNT_KEY": "ZW52a2V5"}, "SAS token (storage options)",
     lambda o: "SharedAccessSignature=sv=1&sig=eA" in o["connection_string"]),
    ({"connection_string": "AccountName=acct;AccountKey=eA=="}, {}, "connection string (storage options)",
     lambda o: o["connection_string"].startswith("AccountName=acct")),
    ({}, {"AZURE_STORAGE_CONNECTION_STRING": ENV_CS.replace("envacct", "acct"), "AZURE_STORAGE_ACCOUNT_KEY": "eA"},
     "AZURE_STORAGE_CONNECTION_STRING", lambda o: o["connection_string"].startswith("DefaultEndpoints")),
    ({}, {"AZURE_STORAGE_ACCOUNT_KEY": "ZW52a2V5", "AZURE_STORAGE_SAS_TOKEN": "sig=eA"}, "AZURE_STORAGE_ACCOUNT_KEY",
     lambda o: "AccountKey=ZW52a2V5" in o["connection_string"]),
    ({}, {"AZURE_STORAGE_SAS_TOKEN": "sv=1&sig=eA"}, "AZURE_STORAGE_SAS_TOKEN",
     lambda o: "SharedAccessSignature=sv=1&sig=eA" in o["connection_string"]),
    ({}, {"AZURE_STORAGE_CLIENT_ID": "id", "AZURE_STORAGE_CLIENT_SECRET": "s", "AZURE_STORAGE_TENANT_ID": "t"},
     "service principal (AZURE_STORAGE_CLIENT_ID)", lambda o: o["client_secret"] == "s"),
    ({}, {}, "DefaultAzureCredential", lambda o: o["anon"] is False and "connection_string" not in o),
    ({"anon": False}, {}, "DefaultAzureCredential (storage options: anon=false)", lambda o: o["anon"] is False),
])
def test_credentials_are_taken_in_order(explicit, environ, source, check):
    options, got = credentials.resolve_options("abfs://images@acct.dfs.core.windows.net/x.png", explicit, environ)
    assert got == source
    assert check(options)
    assert options["account_name"] == "acct"


def test_account_comes_from_option_url_or_environment():
    url = "az://images/x.png"
    assert credentials.resolve_options(url, {"account_name": "opt"}, {"AZURE_STORAGE_ACCOUNT_NAME": "env"})[0][
        "account_name"] == "opt"
    assert credentials.resolve_options(url, {}, {"AZURE_STORAGE_ACCOUNT_NAME": "env"})[0]["account_name"] == "env"
    with pytest.raises(StorageError, match="needs the storage account .* abfs://CONTAINER@ACCOUNT"):
        credentials.resolve_options(url, {}, {})


def test_credentials_for_another_account_are_refused():
    with pytest.raises(StorageError, match="names account 'acct' but the credentials .* 'envacct'"):
        credentials.resolve_options("abfs://images@acct.dfs.core.windows.net/x", {},
                                {"AZURE_STORAGE_CONNECTION_STRING": ENV_CS})


def test_a_token_credential_is_not_silently_replaced_by_an_environment_key():
    with pytest.raises(StorageError, match="unset AZURE_STORAGE_ACCOUNT_KEY"):
        credentials.resolve_options("az://images/x", {"anon": False, "account_name": "a"},
                                {"AZURE_STORAGE_ACCOUNT_KEY": "k"})


def test_describe_names_the_method_and_never_the_secret(monkeypatch, no_azure_env):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", ENV_CS)
    info = credentials.describe("az://images/x.png")
    assert info == {"protocol": "az", "credentials": "AZURE_STORAGE_CONNECTION_STRING", "account": "envacct"}
    assert credentials.describe("/tmp/x") == {"protocol": "file", "credentials": "local"}


def test_default_azure_credential_is_used_without_other_credentials(no_azure_env):
    pytest.importorskip("azure.identity")
    fs, path = storage.filesystem("abfs://images@acct.dfs.core.windows.net/x.png")
    assert path == "images/x.png" and fs.anon is False and fs.account_name == "acct"
    assert type(fs.sync_credential).__name__ == "DefaultAzureCredential"


# --- command-line options ----------------------------------------------------------------

def test_option_pairs_are_typed_and_secrets_refused():
    pairs = ["account_name=123", "retry_total=2", "initial_backoff=0.5", "anon=false"]
    assert credentials.parse_option_pairs(pairs) == {
        "account_name": "123", "retry_total": 2, "initial_backoff": 0.5, "anon": False}
    for pair in ("account_key=c2VjcmV0", "sas_token=sv=1&sig=c2ln", "connection_string=AccountKey=c2VjcmV0",
                 "client_secret=c2VjcmV0"):
        with pytest.raises(StorageError, match="secrets do not belong on the command line") as info:
            credentials.parse_option_pairs([pair])
        assert "c2VjcmV0" not in str(info.value) and "c2ln" not in str(info.value)
    with pytest.raises(StorageError, match="expected KEY=VALUE"):
        credentials.parse_option_pairs(["account_name"])


def test_executors_get_the_drivers_environment_credentials_as_options():
    env = {"AZURE_STORAGE_CONNECTION_STRING": ENV_CS, "AZURE_STORAGE_ACCOUNT_NAME": "envacct"}
    assert credentials.for_executors({"retry_total": 1}, env) == {
        "retry_total": 1, "connection_string": ENV_CS, "account_name": "envacct"}
    principal = {"AZURE_STORAGE_CLIENT_ID": "id", "AZURE_STORAGE_CLIENT_SECRET": "c2VjcmV0",
                 "AZURE_STORAGE_TENANT_ID": "t", "AZURE_STORAGE_ACCOUNT_NAME": "acct"}
    assert credentials.for_executors({}, principal) == {
        "client_id": "id", "client_secret": "c2VjcmV0", "tenant_id": "t", "account_name": "acct"}
    # Explicit credentials are what the run was told to use: the environment adds none.
    assert credentials.for_executors({"sas_token": "sv=1&sig=x"}, env) == {"sas_token": "sv=1&sig=x"}
    # Nothing to send: executors use their own DefaultAzureCredential.
    assert credentials.for_executors({}, {}) == {}
    assert "c2VjcmV0" not in redact("secret c2VjcmV0 in a message")


def test_options_file_then_pairs(tmp_path):
    import argparse

    path = tmp_path / "storage.json"
    path.write_text(json.dumps({"account_name": "file", "account_key": "c2VjcmV0", "retry_total": 5}))
    parser = argparse.ArgumentParser()
    cli.add_storage_arguments(parser)
    args = parser.parse_args(["--storage-options-file", str(path), "--storage-option", "retry_total=1"])
    assert cli.storage_options_from_args(args) == {"account_name": "file", "account_key": "c2VjcmV0", "retry_total": 1}
    path.write_text("[1, 2]")
    with pytest.raises(StorageError, match="must be a JSON object, got a list"):
        cli.storage_options_from_args(args)


# --- the lake command, locally -----------------------------------------------------------

def make_tree(root, seed=0) -> dict:
    """A small tree: nested folders, an empty file, binary data of several sizes."""
    rng = np.random.default_rng(seed)
    files = {"top.bin": rng.bytes(70_000), "empty.txt": b"", "a/b/c/deep.bin": rng.bytes(9 * 2**20 + 17),
             "a/note with space.txt": b"hello\n"}
    files.update({f"tiles/{i:02d}.png": rng.bytes(int(rng.integers(1, 3000))) for i in range(12)})
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    return files


def read_tree(root) -> dict:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root).replace(os.sep, "/")] = fh.read()
    return out


def lake_cli(capsys, *args):
    code = lake.main([*args, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err.strip()


def test_local_copy_skips_same_size_and_overwrites_on_request(tmp_path, capsys):
    files = make_tree(tmp_path / "src")
    dest = str(tmp_path / "dest")
    code, out, _ = lake_cli(capsys, "upload", str(tmp_path / "src"), dest, "--threads", "3")
    assert code == 0 and out.startswith(f"upload: {len(files)} files copied, 0 skipped")
    assert read_tree(dest) == files
    (tmp_path / "src" / "top.bin").write_bytes(b"changed")
    code, out, _ = lake_cli(capsys, "upload", str(tmp_path / "src"), dest)
    assert code == 0 and out.startswith(f"upload: 1 file copied, {len(files) - 1} skipped") and "7 B" in out
    code, out, _ = lake_cli(capsys, "upload", str(tmp_path / "src"), dest, "--overwrite")
    assert out.startswith(f"upload: {len(files)} files copied, 0 skipped")


def test_failed_copies_are_reported_not_swallowed(tmp_path, capsys):
    make_tree(tmp_path / "src")
    os.makedirs(tmp_path / "dest" / "top.bin")  # a folder where a file must go
    code, out, err = lake_cli(capsys, "upload", str(tmp_path / "src"), str(tmp_path / "dest"), "--threads", "1")
    assert code == 1
    assert err.splitlines()[0].startswith("error: top.bin: ")
    assert "1 failed" in out


@pytest.mark.parametrize("args, message", [
    (["upload", "{tmp}/missing", "{tmp}/dest"], "upload: source not found: {tmp}/missing"),
    (["upload", "az://images/x", "{tmp}/dest"], "upload copies from a local path"),
    (["download", "az://images/x", "az://images/y"], "download copies to a local path"),
    (["download", "adl://store.azuredatalakestore.net/x", "{tmp}/dest"], "Gen1, retired"),
    (["upload", "{tmp}", "az://images/x", "--threads", "0"], "--threads must be in [1, 128]"),
    (["upload", "{tmp}", "az://images/x", "--threads", "1000"], "(each copy buffers 8 MiB blocks), got 1000"),
])
def test_lake_bad_arguments(args, message, capsys, tmp_path, no_azure_env):
    code, _, err = lake_cli(capsys, *(a.format(tmp=tmp_path) for a in args))
    message = message.format(tmp=tmp_path)
    assert not os.path.exists(tmp_path / "dest")
    assert code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


# --- CIFAR through fsspec ------------------------------------------------------------------

def write_fake_cifar(root, n=6):
    """``n`` records in each CIFAR-10 binary file, labels 0..9 cycling."""
    from tilesets.labelled import RECORD_BYTES, TEST_FILES, TRAIN_FILES

    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(1)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(os.path.join(root, "batches.meta.txt"), "w") as fh:
        fh.write("\n".join(names) + "\n")
    for k, filename in enumerate(TRAIN_FILES + TEST_FILES):
        records = rng.integers(0, 256, (n, RECORD_BYTES), dtype=np.uint8)
        records[:, 0] = (np.arange(n) + k) % 10
        records.tofile(os.path.join(root, filename))


def test_load_cifar_reads_local_and_memory_urls(tmp_path):
    import fsspec

    from tilesets import load_cifar

    write_fake_cifar(tmp_path / "cifar")
    local = load_cifar(str(tmp_path / "cifar"), "train")
    mem = fsspec.filesystem("memory")
    for name in os.listdir(tmp_path / "cifar"):
        mem.pipe_file(f"/cifar-test/{name}", (tmp_path / "cifar" / name).read_bytes())
    remote = load_cifar("memory://cifar-test", "train")
    assert len(local) == 30 and np.array_equal(local.images, remote.images)
    assert list(remote.original[:2]) == ["airplane", "automobile"] and remote.model_class[1] == "car"
    with pytest.raises(FileNotFoundError, match="CIFAR-10 folder not found"):
        load_cifar("memory://no-such-cifar")


# --- against Azurite ---------------------------------------------------------------------

@pytest.mark.azurite
def test_upload_download_round_trip_with_threads(tmp_path, capsys, azurite, container):
    name, url = container
    files = make_tree(tmp_path / "src")
    code, out, _ = lake_cli(capsys, "upload", str(tmp_path / "src"), f"{url}/tree", "--threads", "4",
                            "--storage-option", "retry_total=1")
    assert code == 0 and out.startswith(f"upload: {len(files)} files copied, 0 skipped")
    assert azurite.blobs(name, "tree/") == {f"tree/{rel}": data for rel, data in files.items()}

    code, out, _ = lake_cli(capsys, "upload", str(tmp_path / "src"), f"{url}/tree", "--threads", "4")
    assert out.startswith(f"upload: 0 files copied, {len(files)} skipped")

    code, out, _ = lake_cli(capsys, "download", f"{url}/tree", str(tmp_path / "back"), "--threads", "4")
    assert code == 0 and out.startswith(f"download: {len(files)} files copied")
    assert read_tree(tmp_path / "back") == files

    code, out, _ = lake_cli(capsys, "download", f"{url}/tree/top.bin", str(tmp_path / "one.bin"))
    assert code == 0 and (tmp_path / "one.bin").read_bytes() == files["top.bin"]
    code, _, err = lake_cli(capsys, "download", f"{url}/nothing-here", str(tmp_path / "none"))
    assert code == 2 and "source not found" in err


@pytest.mark.azurite
def test_filesystem_pickles_and_works_in_a_fresh_process(azurite, container):
    """What an executor does: unpickle the filesystem and read, with no credentials in its environment."""
    name, url = container
    fs, path = storage.filesystem(f"{url}/data/blob.bin")
    fs.pipe_file(path, b"0123456789")
    assert KEY not in repr(fs) and KEY not in str(fs)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    script = ("import pickle, sys; fs, path = pickle.loads(sys.stdin.buffer.read()); "
              "f = fs.open(path, 'rb'); f.seek(3); g = pickle.loads(pickle.dumps(f)); "
              "sys.stdout.buffer.write(fs.cat_file(path) + b'|' + g.read())")
    proc = subprocess.run([sys.executable, "-c", script], input=pickle.dumps((fs, path)), capture_output=True,
                          env=clean_env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout == b"0123456789|3456789"  # an open file keeps its position


@pytest.mark.azurite
@pytest.mark.parametrize("method", ["account key", "SAS token"])
def test_key_and_sas_from_the_environment(method, azurite, container, monkeypatch):
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    name, url = container
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
    if method == "account key":
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    else:
        sas = generate_account_sas(ACCOUNT, KEY, ResourceTypes(service=True, container=True, object=True),
                                   AccountSasPermissions(read=True, write=True, list=True, create=True),
                                   expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", sas)
    # The emulator is plain http on a port: give the endpoint as account_host.
    fs, path = storage.filesystem(f"{url}/env.txt", {"account_host": azurite.endpoint})
    fs.pipe_file(path, method.encode())
    assert azurite.blobs(name) == {"env.txt": method.encode()}


@pytest.mark.azurite
def test_explicit_credentials_win_over_the_environment(azurite, container, monkeypatch):
    name, url = container
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string(WRONG_KEY))
    good = {"account_name": ACCOUNT, "account_key": KEY, "account_host": azurite.endpoint}
    fs, path = storage.filesystem(f"{url}/x.txt", good)
    fs.pipe_file(path, b"explicit")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string())
    bad = {**good, "account_key": WRONG_KEY, "retry_total": 0}
    with pytest.raises(StorageError, match=r"access denied \(Authorization") as info:
        storage.read_bytes(*storage.filesystem(f"{url}/x.txt", bad))
    assert WRONG_KEY not in str(info.value) and KEY not in str(info.value)


@pytest.mark.azurite
def test_load_cifar_from_azurite(tmp_path, azurite, container):
    from tilesets import load_cifar

    name, url = container
    write_fake_cifar(tmp_path / "cifar")
    assert transfer(str(tmp_path / "cifar"), f"{url}/cifar10", progress=False).ok
    remote = load_cifar(f"{url}/cifar10", "test")
    local = load_cifar(str(tmp_path / "cifar"), "test")
    assert np.array_equal(remote.images, local.images) and list(remote.original) == list(local.original)


# --- RunWriter on blob storage -----------------------------------------------------------

def outputs(azurite, name, prefix="run/"):
    """The blobs under ``prefix``, the tilescan marker aside (its content is a run id)."""
    found = {k[len(prefix):]: v for k, v in azurite.blobs(name, prefix).items()}
    found.pop(MARKER, None)
    return found


@pytest.mark.azurite
def test_run_writer_commits_atomically_on_blob_storage(azurite, container):
    name, url = container
    writer = RunWriter(f"{url}/run")
    writer.check()
    writer.write("a.json", b"{}")
    writer.write("b.bin", b"x" * 1000)
    staged = outputs(azurite, name)
    assert SUCCESS not in staged and all(k.startswith("_temporary-") for k in staged)
    writer.commit()
    assert outputs(azurite, name) == {"a.json": b"{}", "b.bin": b"x" * 1000, SUCCESS: b""}


@pytest.mark.azurite
def test_run_writer_is_not_fooled_by_cached_listings(azurite, container):
    name, url = container
    first = RunWriter(f"{url}/run")
    first.write("a.json", b"1")
    first.commit()
    first.fs.ls(first.root)  # adlfs now answers exists() from this listing
    azurite.delete_blob(name, f"run/{SUCCESS}")  # behind adlfs' back
    second = RunWriter(f"{url}/run")
    second.check()  # no longer finished: must not refuse
    second.write("a.json", b"22")
    second.commit()
    assert outputs(azurite, name) == {"a.json": b"22", SUCCESS: b""}
    third = RunWriter(f"{url}/run")
    with pytest.raises(Exception, match="already holds a finished run"):
        third.check()


@pytest.mark.azurite
def test_run_writer_abort_leaves_nothing(azurite, container):
    name, url = container
    writer = RunWriter(f"{url}/new-run")
    writer.write("a.json", b"{}")
    writer.abort()
    assert outputs(azurite, name, "new-run/") == {}


@pytest.mark.azurite
def test_both_url_forms_reach_the_same_blob(azurite, container):
    name, _ = container
    fs, path = storage.filesystem(f"abfs://{name}@{ACCOUNT}.dfs.core.windows.net/forms/x.txt")
    fs.pipe_file(path, b"abfs")
    assert storage.read_bytes(*storage.filesystem(f"az://{name}/forms/x.txt")) == b"abfs"
