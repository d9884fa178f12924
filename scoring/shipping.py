"""The code executors run, as one zip: the task module and what it imports, nothing more.

Cluster nodes lack the project's packages, so the driver ships them. The zip holds the
closure of project modules that :mod:`scoring.executor` and the chosen engine import
(found by reading their ``import`` statements, those inside functions included): scoring
the bands and finishing each picture (merging, the overlay, its outputs). The driver-only
modules (the pipeline, the job, inputs, parameters) and the other packages (training,
evaluation, collages, entry points) stay behind.
"""
from __future__ import annotations

import io
import os
import tokenize
import zipfile

from core.project import ROOT

__all__ = ["EXECUTOR_ENTRY", "EXECUTOR_PACKAGES", "executor_modules", "executor_zip"]

#: The module Spark unpickles the task from.
EXECUTOR_ENTRY = "scoring.executor"
#: The project packages executor code may import (docs/architecture.md); the rest stay home.
EXECUTOR_PACKAGES = ("core", "engines", "pixels", "scoring", "tiling", "viewer")


def _file_of(module: str) -> str | None:
    """The source file of a project module or package, or ``None`` when there is none."""
    base = os.path.join(ROOT, *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _logical_lines(path: str):
    """The token strings of each logical line of a source file, comments and layout dropped."""
    line: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for token in tokenize.generate_tokens(fh.readline):
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if line:
                    yield line
                line = []
            elif token.type in (tokenize.NAME, tokenize.OP):
                line.append(token.string)


def _imports(path: str) -> set[str]:
    """Every module an import statement in ``path`` names, candidates for ``from X import Y`` included.

    Read from tokens rather than an AST: CPython 3.11 can fail to build ASTs while other
    threads (Spark's, a notebook kernel's) compile code.
    """
    names = set()
    for tokens in _logical_lines(path):
        words = [t for t in tokens if t not in ("(", ")")]
        if words[:1] == ["import"]:
            for part in " ".join(words[1:]).split(","):
                names.add(part.split(" as ")[0].replace(" ", ""))
        elif words[:1] == ["from"] and "import" in words and words[1] != ".":
            at = words.index("import")
            module = "".join(words[1:at])
            names.add(module)
            for part in " ".join(words[at + 1:]).split(","):
                if part.strip():
                    names.add(f"{module}.{part.split(' as ')[0].strip()}")  # a submodule, if it is one
    return names


def executor_modules(*entries: str) -> list[str]:
    """The project modules ``entries`` import, directly or not, with their parent packages; sorted."""
    found: set[str] = set()
    todo = [EXECUTOR_ENTRY, *entries]
    while todo:
        module = todo.pop()
        if module in found or module.split(".")[0] not in EXECUTOR_PACKAGES or _file_of(module) is None:
            continue
        found.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports(_file_of(module)))
    return sorted(found)


def _package_files() -> tuple:
    """``(path, mtime_ns, size)`` of every source file in the executor packages: changes when the code does."""
    found = []
    for package in EXECUTOR_PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    stat = os.stat(os.path.join(folder, name))
                    found.append((os.path.join(folder, name), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))


_zips: dict = {}  # entries -> (package files, zip bytes): reading every import takes ~50 ms a run


def executor_zip(*entries: str) -> bytes:
    """The executor modules (see :func:`executor_modules`) as zip bytes, equal code giving equal bytes.

    Built again only when a source file of the executor packages changed since the last call.
    """
    files = _package_files()
    if entries not in _zips or _zips[entries][0] != files:
        _zips[entries] = (files, _build_zip(entries))
    return _zips[entries][1]


def _build_zip(entries: tuple) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for module in executor_modules(*entries):
            path = _file_of(module)
            info = zipfile.ZipInfo(os.path.relpath(path, ROOT), date_time=(2020, 1, 1, 0, 0, 0))
            with open(path, "rb") as fh:
                archive.writestr(info, fh.read(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
