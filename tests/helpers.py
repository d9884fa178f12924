"""What several test modules use besides the fixtures of conftest.py."""
from __future__ import annotations

import io
import json
import os
import shutil
import uuid

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
