"""A Python worker keeps its zips' directories across tasks, and still sees a zip that changed."""
from __future__ import annotations

import importlib
import os
import sys
import zipfile
import zipimport

import pytest

from scoring.worker_imports import keep_zip_directories

pytestmark = pytest.mark.skipif(not (3, 10) <= sys.version_info[:2] < (3, 12),
                                reason="only Python 3.10 and 3.11 re-read zips when caches are invalidated")


def _write_zip(path, modules: dict) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in modules.items():
            archive.writestr(f"{name}.py", source)


@pytest.fixture
def zip_on_path(tmp_path, monkeypatch):
    """A zip of one module on ``sys.path``, imported once; the importer patch undone afterwards."""
    monkeypatch.setattr(zipimport.zipimporter, "invalidate_caches", zipimport.zipimporter.invalidate_caches)
    path = str(tmp_path / "shipped.zip")
    _write_zip(path, {"tilescan_zip_first": "VALUE = 1\n"})
    monkeypatch.syspath_prepend(path)
    for name in ("tilescan_zip_first", "tilescan_zip_second"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()
    assert importlib.import_module("tilescan_zip_first").VALUE == 1
    return path


def _directory(path):
    """The directory Python holds for a zip on the path: every read makes a new one."""
    return zipimport._zip_directory_cache[path]


def test_an_unchanged_zip_is_not_read_again(zip_on_path):
    before = _directory(zip_on_path)
    importlib.invalidate_caches()
    assert _directory(zip_on_path) is not before  # Python's own behaviour: a fresh read every time

    assert keep_zip_directories() is True
    kept = _directory(zip_on_path)
    importlib.invalidate_caches()
    importlib.invalidate_caches()
    assert _directory(zip_on_path) is kept


def test_a_changed_zip_is_read_again(zip_on_path):
    assert keep_zip_directories() is True
    kept = _directory(zip_on_path)
    os.remove(zip_on_path)
    _write_zip(zip_on_path, {"tilescan_zip_first": "VALUE = 1\n", "tilescan_zip_second": "VALUE = 2\n"})
    importlib.invalidate_caches()
    assert _directory(zip_on_path) is not kept
    assert importlib.import_module("tilescan_zip_second").VALUE == 2


def test_installing_twice_keeps_one_wrapper(zip_on_path):
    assert keep_zip_directories() is True
    wrapper = zipimport.zipimporter.invalidate_caches
    assert keep_zip_directories() is True
    assert zipimport.zipimporter.invalidate_caches is wrapper
