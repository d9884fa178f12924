"""Round trips to the lake: what probing, reading and committing a picture asks of blob storage,
counted by the Azurite emulator's own request log.

Every request is a round trip (tens of milliseconds on a real lake); a collection of small
pictures is dominated by them. ``benchmarks/storage.py`` reports the count per picture of a
whole run; these tests pin the parts of it, each with the requests it needs.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
from PIL import Image

from core import storage
from localservices.azurite import Azurite, AzuriteError
from pixels.read import decode_image, probe_image
from scoring.outputs import OUTPUT_FILES, SUCCESS, RunWriter
from scoring.stored_windows import write_part

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    """An emulator of its own that logs every request it serves, and a container in it."""
    folder = tmp_path_factory.mktemp("azurite-counting")
    emulator = Azurite(str(folder), debug_log=str(folder / "debug.log"))
    try:
        emulator.start()
    except AzuriteError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield emulator, emulator.create_container(), {"connection_string": emulator.connection_string()}
    emulator.stop()


def _asked(emulator: Azurite, since: str) -> collections.Counter:
    """The operations asked of the emulator since mark ``since`` (:meth:`Azurite.mark`)."""
    return collections.Counter(r["operation"] for r in emulator.requests_between(since, emulator.mark()))


def test_a_commit_moves_each_file_in_one_request_and_lists_the_folder_twice(counting):
    emulator, container, options = counting
    writer = RunWriter(f"az://{container}/commit", storage_options=options)
    writer.check()
    for name in OUTPUT_FILES:
        writer.write(name, name.encode() * 10)
    since = emulator.mark()
    writer.commit()
    asked = _asked(emulator, since)
    # The lock (written if absent, removed after), the marker and _SUCCESS; a copy per file and a
    # delete per staged file and of the staging folder; what the folder holds, before and after.
    assert asked["Blob_StartCopyFromURL"] == len(OUTPUT_FILES)
    # The lock's and each staged file's; the staging folder's own where the SDK asks (a lake with folders).
    assert len(OUTPUT_FILES) + 1 <= asked["Blob_Delete"] <= len(OUTPUT_FILES) + 2
    assert asked["Container_ListBlobHierarchySegment"] <= 4
    assert asked["Blob_GetProperties"] == 0 and asked["Container_ListBlobFlatSegment"] == 0, asked
    assert sum(asked.values()) <= 20, asked
    names = {b.rsplit("/", 1)[-1] for b in emulator.blobs(container, "commit/")}
    assert names == {*OUTPUT_FILES, SUCCESS, "_tilescan"}


def test_replacing_a_run_removes_only_the_files_it_has(counting):
    emulator, container, options = counting
    first = RunWriter(f"az://{container}/again", storage_options=options)
    first.check()
    for name in OUTPUT_FILES:
        first.write(name, b"first")
    first.commit()
    second = RunWriter(f"az://{container}/again", storage_options=options, overwrite=True)
    second.check()
    second.write("windows.parquet", b"second run")
    second.write("manifest.json", b"second")
    since = emulator.mark()
    second.commit()
    asked = _asked(emulator, since)
    assert asked["Blob_GetProperties"] == 0, asked  # every decision from the listing
    blobs = emulator.blobs(container, "again/")
    assert {b.rsplit("/", 1)[-1] for b in blobs} == {"windows.parquet", "manifest.json", SUCCESS, "_tilescan"}
    assert blobs["again/windows.parquet"] == b"second run"


def test_a_collection_picture_writes_its_windows_once_in_fewer_requests(counting):
    emulator, container, options = counting
    windows = b"windows" * 10

    def commit(name: str, *, one_copy: bool) -> collections.Counter:
        """A collection picture's commit, its windows in the run's dataset: as written now (once,
        inside the commit), or as before (in its folder too, and the part after the commit)."""
        writer = RunWriter(f"az://{container}/coll-{name}/p", storage_options=options)
        writer.check()
        for file in OUTPUT_FILES:
            if file != "windows.parquet" or not one_copy:
                writer.write(file, windows if file == "windows.parquet" else file.encode() * 10)
        part_url = f"az://{container}/coll-{name}/windows/image=p/part-00000.parquet"
        _, part = storage.filesystem(part_url, options)
        since = emulator.mark()
        if one_copy:
            writer.commit(before_moves=lambda: write_part(writer.fs, part, windows, staging=writer.staging,
                                                          url=part_url))
        else:
            writer.commit()
            storage.make_folder(writer.fs, part.rsplit("/", 1)[0], url=part_url)
            storage.write_bytes(writer.fs, part, windows, url=part_url)
        asked = _asked(emulator, since)
        blobs = emulator.blobs(container, f"coll-{name}/")
        assert blobs[f"coll-{name}/windows/image=p/part-00000.parquet"] == windows
        assert (f"coll-{name}/p/windows.parquet" in blobs) != one_copy
        return asked

    once, twice = commit("once", one_copy=True), commit("twice", one_copy=False)
    # The part's upload replaces the copy and delete of the folder's windows.parquet, and the
    # container check before the part.
    assert once["Blob_StartCopyFromURL"] == twice["Blob_StartCopyFromURL"] - 1 == len(OUTPUT_FILES) - 1
    assert once["Blob_Delete"] == twice["Blob_Delete"] - 1
    assert sum(once.values()) < sum(twice.values()), (once, twice)


def test_a_small_picture_is_probed_in_two_requests_and_decoded_in_one(counting, tmp_path):
    emulator, container, options = counting
    local = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(local)
    with emulator.service() as service:
        service.get_blob_client(container, "in/small.png").upload_blob(local.read_bytes())
    url = f"az://{container}/in/small.png"
    since = emulator.mark()
    info = probe_image(url, storage_options=options)
    assert _asked(emulator, since) == {"Blob_GetProperties": 1, "Blob_Download": 1}
    since = emulator.mark()
    pixels = decode_image(info, storage_options=options)
    assert _asked(emulator, since) == {"Blob_Download": 1}
    assert pixels.shape == (96, 128, 3)
