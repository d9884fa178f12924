"""Memory of the driver and of the executors on big pictures, sampled from /proc while they run.

    python -m benchmarks.memory [--model models/default] [--quick]

1. a 12,000 x 12,000 tiled TIFF on local disk;
2. a 1-gigapixel (32,768 x 32,768) tiled BigTIFF served by the Azurite emulator, with the
   outputs written there too; its windows are compared with a single-process reference
   (the same engine on the same windows, read with tifffile) on a sample of window rows.

Both at stride 64 with every window kept (``--keep 0``), ``python app/score.py
--master local[2]`` in a fresh process; :mod:`benchmarks.procmem` samples the driver's
Python, the driver's JVM and every executor Python worker. The targets: driver Python
under 400 MB, driver JVM under 900 MB, each executor Python worker under 600 MB.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import spark_env
from benchmarks.procmem import TreeSampler
from core.project import ROOT, project_path

__all__ = ["synthetic_tiff", "measure", "run", "main", "TARGETS_MB"]

logger = logging.getLogger(__name__)

TARGETS_MB = {"driver_python": 400, "driver_jvm": 900, "executor_python": 600}
LOCAL_SIDE, LAKE_SIDE = 12_000, 32_768
QUICK_LOCAL_SIDE, QUICK_LAKE_SIDE = 2_000, 4_096
STRIDE = 64
TILE = 512


def _tile(ty: int, tx: int, size: int, seed: int) -> np.ndarray:
    """A tile of a smooth, compressible picture: colour blocks of 16 px with a gentle ripple."""
    rng = np.random.default_rng([seed, ty, tx])
    blocks = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    tile = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1).astype(np.int16)
    ripple = (np.sin(np.arange(size) / 7.0) * 12).astype(np.int16)
    return np.clip(tile + ripple[:, None, None], 0, 255).astype(np.uint8)


def synthetic_tiff(path: str, side: int, *, bigtiff: bool = False, seed: int = 0) -> str:
    """A ``side x side`` tiled RGB TIFF (zlib, 512-pixel tiles) at ``path``, written tile by tile; kept if present."""
    import tifffile

    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rows = range(0, side, TILE)
    tiles = (_tile(ty, tx, TILE, seed) for ty in rows for tx in rows)
    partial = path + ".partial"
    tifffile.imwrite(partial, tiles, shape=(side, side, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                     compression="zlib", bigtiff=bigtiff)
    os.replace(partial, path)
    return path


def measure(image: str, out: str, model: str, log: str, *, side: int, env: dict | None = None,
            master: str = "local[2]") -> dict:
    """Score the ``side``-square ``image`` with ``python app/score.py`` in a fresh process while sampling its memory.

    ``--max-pixels`` is raised to the picture's size: the default cap (400 megapixels) would
    refuse the gigapixel one.
    """
    command = [sys.executable, project_path("app", "score.py"), "--image", image, "--out", out, "--model",
               model, "--master", master, "--stride", str(STRIDE), "--keep", "0", "--max-pixels", str(side * side),
               "--overwrite", "--quiet"]
    started = time.time()
    with open(log, "w") as fh:
        process = subprocess.Popen(command, env=env or spark_env(), stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        peaks = TreeSampler.watch(process)
    wall = time.time() - started
    if process.returncode:
        with open(log) as fh:
            raise RuntimeError(f"score.py exited {process.returncode}; {log}:\n{fh.read()[-2000:]}")
    return {"image": image, "command_s": wall, "peaks_mb": peaks,
            "within_targets": {k: peaks[k] < v for k, v in TARGETS_MB.items()}}


def _reference_check(tiff: str, windows, model: str, rows: list[int]) -> dict:
    """The run's windows on window rows ``rows`` against the engine on the same windows, read with tifffile."""
    import tifffile
    import zarr

    from core.bundle import load_bundle
    from engines import create_engine, engine_class
    from scoring.params import resolve_settings

    bundle = load_bundle(model)
    settings = resolve_settings(bundle.spec, bundle.recommended, bundle.files)
    engine = create_engine(bundle.subset(engine_class(settings.engine).required_files), settings.engine)
    size = bundle.spec.size
    worst, compared = 0.0, 0
    with tifffile.TiffFile(tiff) as tif, tif.pages[0].aszarr() as store:
        picture = zarr.open(store, mode="r")
        for y in rows:
            band = np.asarray(picture[y:y + size])
            mine = windows[windows["y"] == y].sort_values("x")
            xs = mine["x"].to_numpy()
            batch = np.stack([band[:, x:x + size].transpose(2, 0, 1) for x in xs])
            probs, _ = engine.detect(batch)
            got = mine[[f"p_{c}" for c in bundle.spec.classes]].to_numpy()
            worst = max(worst, float(np.abs(got - probs).max()))
            compared += len(xs)
    return {"rows": rows, "windows": compared, "max_abs_diff": worst}


def run(model: str, work: str, *, quick: bool = False) -> dict:
    """Both pictures; the lake one through a fresh Azurite emulator."""
    import pyarrow.parquet as pq

    from core.transfer import transfer
    from localservices.azurite import Azurite

    local_side, lake_side = (QUICK_LOCAL_SIDE, QUICK_LAKE_SIDE) if quick else (LOCAL_SIDE, LAKE_SIDE)
    folder = os.path.join(work, "memory")
    local = synthetic_tiff(os.path.join(folder, f"tiled-{local_side}.tif"), local_side)
    logger.info("memory: %dx%d tiled TIFF on local disk", local_side, local_side)
    results = {"stride": STRIDE, "targets_mb": TARGETS_MB,
               "local": {"side": local_side, **measure(local, os.path.join(folder, "run-local"), model,
                                                        os.path.join(folder, "run-local.log"), side=local_side)}}

    big = synthetic_tiff(os.path.join(folder, f"bigtiff-{lake_side}.tif"), lake_side, bigtiff=True, seed=1)
    os.makedirs(os.path.join(folder, "azurite"), exist_ok=True)
    azurite = Azurite(os.path.join(folder, "azurite"))
    azurite.start()
    try:
        options = {"connection_string": azurite.connection_string()}
        container = azurite.create_container()
        started = time.time()
        if not transfer(big, f"az://{container}/in/big.tif", threads=8, storage_options=options, progress=False).ok:
            raise RuntimeError("the BigTIFF could not be uploaded to Azurite")
        upload_s = time.time() - started
        env = {k: v for k, v in spark_env().items() if not k.startswith("AZURE_STORAGE_")}
        env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string()
        out = f"az://{container}/run"
        logger.info("memory: %dx%d tiled BigTIFF on Azurite", lake_side, lake_side)
        lake = measure(f"az://{container}/in/big.tif", out, model, os.path.join(folder, "run-lake.log"),
                       side=lake_side, env=env)
        import fsspec

        fs = fsspec.filesystem("az", connection_string=azurite.connection_string())
        with fs.open(f"{container}/run/windows.parquet", "rb") as fh:
            windows = pq.read_table(fh).to_pandas()
        ys = np.unique(windows["y"].to_numpy())
        check = _reference_check(big, windows, model, [int(ys[0]), int(ys[len(ys) // 2]), int(ys[-1])])
    finally:
        azurite.stop()
    results["lake"] = {"side": lake_side, "bytes": os.path.getsize(big), "upload_s": upload_s,
                       "windows": int(len(windows)), **lake, "reference": check}
    return results


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda _, inputs, args: report.memory_section(
        run(inputs.model, inputs.work, quick=args.quick)), argv, spark=False)


if __name__ == "__main__":
    sys.exit(main())
