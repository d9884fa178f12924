"""What several test modules use besides the fixtures of conftest.py."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

from core.bundle import update_model_json
from core.golden import golden_bytes


def copy_bundle(src: str, dest, *, int8_engine_recommended: bool = False) -> str:
    """A copy of bundle ``src`` in ``dest`` with a sha256 of its own, so that no Python worker
    of the test session has its engine cached yet (optionally recommending the int8 engine)."""
    shutil.copytree(src, dest)
    keys = {"copy": uuid.uuid4().hex}
    if int8_engine_recommended:
        keys["recommended"] = {"engine": "onnxruntime-int8"}
    update_model_json(str(dest), **keys)
    return str(dest)


def tamper_golden(folder, *, shift: float = 0.0, tolerance: dict | None = None) -> str:
    """Rewrite a bundle's golden batch: its reference probabilities moved by ``shift`` and, with
    ``tolerance`` (precision -> its fields), those tolerances replaced. The sha256s in
    model.json follow, so the bundle still verifies: only its numbers are wrong."""
    path = os.path.join(folder, "golden.npz")
    with np.load(io.BytesIO(open(path, "rb").read())) as npz:
        arrays = {name: npz[name] for name in npz.files}
    with open(path, "wb") as fh:
        fh.write(golden_bytes(arrays["windows"], arrays["probabilities"] + np.float32(shift), arrays.get("deltas")))
    record = json.load(open(os.path.join(folder, "model.json")))["golden"]
    for precision, fields in (tolerance or {}).items():
        record["tolerance"][precision] = {**record["tolerance"].get(precision, {}), **fields}
    update_model_json(str(folder), golden=record)
    return str(folder)


#: The start-up file that makes Spark's Python workers faulty or slow (see its docstring).
EXECUTOR_FAULTS = os.path.join(os.path.dirname(__file__), "executor_faults")


def python_with(folder, **env: str) -> str:
    """A Python for Spark's workers (``PYSPARK_PYTHON``): a script in ``folder`` that starts this
    Python with ``env`` set and tests/executor_faults/sitecustomize.py loaded."""
    exports = "".join(f'export {name}="{value}"\n' for name, value in env.items())
    wrapper = Path(folder) / "python"
    wrapper.write_text(f"#!/bin/sh\n{exports}"
                       f'PYTHONPATH="{EXECUTOR_FAULTS}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


_PROGRESS = re.compile(r"scoring: ([\d,]+)/([\d,]+) pictures finished, ([\d,]+)/([\d,]+) windows \(\d+%\), "
                       r"([\d,]+|\?) windows/s, (.+) left")


def progress_lines(stderr: str) -> list[tuple]:
    """The progress lines a run printed without a terminal, as ``(pictures finished, pictures,
    windows scored, windows, rate or None, time left)``; AssertionError on a line that does not parse."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("scoring: ") and " windows/s, " in line:
            match = _PROGRESS.fullmatch(line)
            assert match, line
            finished, pictures, done, windows, rate = (None if g == "?" else int(g.replace(",", ""))
                                                       for g in match.groups()[:5])
            found.append((finished, pictures, done, windows, rate, match.group(6)))
    return found


def assert_moves_inside_tasks(lines: list[tuple], stderr: str) -> None:
    """``lines`` (:func:`progress_lines`) count up, and at least two of them, printed before any
    picture was finished, show some windows scored but not all, with a rate and a time left."""
    counts = [line[2] for line in lines]
    assert lines and counts == sorted(counts) and counts[-1] <= lines[0][3], stderr[-3000:]
    inside = [line for line in lines if 0 < line[2] < line[3] and line[0] == 0]
    assert len(inside) >= 2, stderr[-3000:]
    assert any(line[4] is not None and line[5] != "?" for line in inside), stderr[-3000:]
