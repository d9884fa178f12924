"""core.project: the checkout's root, found once, and paths written relative to it."""
from __future__ import annotations

import os

from core.project import ROOT, project_path, project_relative


def test_the_root_holds_the_packages_and_the_bundled_model():
    assert os.path.isfile(project_path("core", "project.py"))
    assert os.path.isfile(project_path("models", "default", "model.json"))
    assert os.path.isabs(ROOT)


def test_paths_inside_the_checkout_are_made_relative_and_others_kept():
    assert project_relative(project_path("work", "run")) == os.path.join("work", "run")
    assert project_relative(ROOT) == "."
    # A sibling whose name starts like the checkout's is outside it.
    sibling = ROOT.rstrip(os.sep) + "-old" + os.sep + "run"
    assert project_relative(sibling) == sibling
    shared = os.path.join(os.path.dirname(ROOT), "shared")
    assert project_relative(shared) == shared
    # A folder inside whose name begins with two dots is still inside.
    assert project_relative(project_path("..cache", "x")) == os.path.join("..cache", "x")


def test_a_relative_path_is_read_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(project_path("work") if os.path.isdir(project_path("work")) else ROOT)
    assert project_relative("run") == os.path.relpath(os.path.abspath("run"), ROOT)
    monkeypatch.chdir(tmp_path)  # outside the checkout: kept as given
    assert project_relative("run") == "run"
