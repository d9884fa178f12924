"""Engine throughput: windows per second of the model through each engine, in one process.

    python -m benchmarks.engine [--model models/default] [--quick]

Batches are cut once from the picture (contiguous uint8 NCHW, as the job hands them to
``Engine.predict``) and timed for every (engine, threads, batch size) in interleaved
rounds, so that a slow spell on a shared machine hits all configurations alike; the best
round is the figure. The work per window is counted from the ONNX graph (Conv and
Gemm/MatMul multiply-adds, after shape inference), so each rate is also a fraction of the
machine's theoretical peak and of its measured sgemm rate.
"""
from __future__ import annotations

import ctypes
import functools
import json
import math
import subprocess
import sys
from collections import Counter

import numpy as np

from benchmarks.common import JOB_BATCH, best_of, measure_rate

__all__ = ["count_flops", "cut_batches", "picture_share", "set_mxnet_threads", "measure_engines", "processes_rate",
           "run", "rate", "processes", "best_batch", "main",
           "ENGINES", "BATCH_SIZES", "QUICK_BATCH_SIZES"]


ENGINES = ("onnxruntime", "mxnet")
BATCH_SIZES = (32, 128, 512, 1024)
QUICK_BATCH_SIZES = (32, 512)


def count_flops(onnx_bytes: bytes, *, band: tuple | None = None) -> dict:
    """Multiply-adds per window of an ONNX classifier: Conv, Gemm and MatMul nodes; of a
    dense network's pass over a ``band`` of ``(height, width)`` pixels, given that.

    The batch dimension is fixed to 1 (and a dense graph's height and width to ``band``'s)
    and ONNX shape inference gives every tensor's shape. A Conv with output ``(1, Co, Ho,
    Wo)`` and weight ``(Co, Ci/g, kh, kw)`` costs ``Co*Ho*Wo * Ci/g*kh*kw`` MACs; a product
    ``(M, K) x (K, N)``, ``M*N*K``. Batch norms, activations, additions and the softmax are
    left out (under 1 % here; ONNX Runtime folds the batch norms into the convolutions).

    Returns
    -------
    dict
        ``macs`` and ``flops`` (``2 * macs``) per window, ``macs_by_op``, ``parameters``.
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load_from_string(onnx_bytes)
    initializers = {init.name: list(init.dims) for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers:
            dims = value.type.tensor_type.shape.dim
            for axis, size in [(0, 1), *([(2, band[0]), (3, band[1])] if band else [])]:
                dims[axis].ClearField("dim_param")
                dims[axis].dim_value = size
    graph = shape_inference.infer_shapes(model, strict_mode=True).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*graph.input, *graph.value_info, *graph.output)}
    shapes.update(initializers)
    macs = Counter()
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            weight, out = shapes[node.input[1]], shapes[node.output[0]]
            macs["Conv"] += math.prod(out[1:]) * math.prod(weight[1:])
        elif node.op_type == "Gemm":
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
            n = b[0] if attrs.get("transB") else b[1]
            macs["Gemm"] += m * n * k
        elif node.op_type == "MatMul":
            macs["MatMul"] += math.prod(shapes[node.output[0]]) * shapes[node.input[0]][-1]
    total = sum(macs.values())
    if not total:
        raise ValueError("the ONNX graph has no Conv, Gemm or MatMul node to count")
    return {"macs": int(total), "flops": int(2 * total), "macs_by_op": dict(macs),
            "parameters": int(sum(math.prod(d) for d in initializers.values()))}


def cut_batches(image: str | None, size: int, count: int, *, seed: int = 0) -> np.ndarray:
    """``(count, 3, size, size)`` uint8 windows cut at stride 16 from ``image`` (random when None)."""
    if image is None:
        return np.random.default_rng(seed).integers(0, 256, (count, 3, size, size), dtype=np.uint8)
    from pixels import read_image
    from scoring.windows import window_batches
    from tiling.grid import WindowGrid

    pixels, _ = read_image(image, min_side=size)
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], size, 16)
    rows = min(len(grid.ys), -(-count // len(grid.xs)) + 1)
    middle = max(0, (len(grid.ys) - rows) // 2)
    ys = grid.ys[middle:middle + rows]
    _, batch = next(window_batches(pixels, ys, grid.xs, size, count))
    if len(batch) < count:  # a small picture: repeat its windows
        batch = np.resize(batch, (count, *batch.shape[1:]))
    return np.ascontiguousarray(batch)


def set_mxnet_threads(threads: int) -> None:
    """Resize MXNet's OpenMP pool (it reads OMP_NUM_THREADS only once, at import)."""
    import mxnet as mx

    if mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(threads)) != 0:
        raise RuntimeError(f"MXSetNumOMPThreads({threads}) failed")


def _engines(bundle, names, threads_list) -> dict:
    """``{(name, threads): (engine, before_each_block)}``; MXNet shares one engine, resized per block."""
    from engines import create_engine

    made, mxnet = {}, None
    for name in names:
        for threads in threads_list:
            if name == "mxnet":
                mxnet = mxnet or create_engine(bundle, name, threads=threads)
                made[name, threads] = (mxnet, functools.partial(set_mxnet_threads, threads))
            else:
                made[name, threads] = (create_engine(bundle, name, threads=threads), lambda: None)
    return made


def measure_engines(engines: dict, windows: np.ndarray, batch_sizes, *, min_seconds: float,
                    rounds: int) -> list[dict]:
    """Rows ``{engine, threads, batch, per_s, ...}`` for every engine and batch size.

    ``engines`` maps ``(name, threads)`` to ``(engine, before)``, ``before`` called ahead
    of each timed block. Rounds interleave the configurations.
    """
    blocks = {}
    for _ in range(rounds):
        for (name, threads), (engine, before) in engines.items():
            for batch in batch_sizes:
                before()
                data = windows[:batch]
                blocks.setdefault((name, threads, batch), []).append(
                    measure_rate(lambda engine=engine, data=data: engine.predict(data), batch, min_seconds=min_seconds))
    return [{"engine": n, "threads": t, "batch": b, **best_of(v)} for (n, t, b), v in blocks.items()]


def with_peak(rows: list[dict], flops_per_window: int, machine: dict | None) -> list[dict]:
    """Add GFLOP/s and the fractions of theoretical peak and of measured sgemm to each row."""
    for row in rows:
        cores = row["threads"] * row.get("processes", 1)
        row["gflops"] = row["per_s"] * flops_per_window / 1e9
        if machine and machine.get("peak_gflops_per_core"):
            row["of_peak"] = row["gflops"] / (machine["peak_gflops_per_core"] * cores)
        sgemm = (machine or {}).get("sgemm", {}).get("gflops", {})
        one = sgemm.get("1")
        if one:
            row["of_sgemm"] = row["gflops"] / (one * cores)
    return rows


def run(model: str, image: str | None, *, threads_list, machine: dict | None = None, quick: bool = False,
        engines=ENGINES) -> dict:
    """The engine section: FLOPs per window, then every engine at every thread count and batch size."""
    from core.bundle import load_bundle

    bundle = load_bundle(model)
    flops = count_flops(bundle.file("onnx"))
    batch_sizes = QUICK_BATCH_SIZES if quick else BATCH_SIZES
    windows = cut_batches(image, bundle.spec.size, max(batch_sizes))
    made = _engines(bundle, list(engines), list(threads_list))
    rows = measure_engines(made, windows, batch_sizes, min_seconds=0.2 if quick else 1.5, rounds=1 if quick else 3)
    # Forward only: the network on already-normalised float32 (what predict adds is the
    # uint8 -> float normalisation and the output check).
    ort = made.get(("onnxruntime", 1), (None,))[0]
    forward = []
    if ort is not None:
        data = bundle.spec.normalise(windows[:JOB_BATCH])
        blocks = [measure_rate(lambda: ort.forward(data), len(data), min_seconds=0.2 if quick else 1.5)
                  for _ in range(1 if quick else 3)]
        forward.append({"engine": "onnxruntime", "threads": 1, "batch": len(data), **best_of(blocks)})
    # Spark's layout at local[N]: N separate processes of 1 thread each, timed together.
    fastest = best_batch({"rows": rows})
    processes = [processes_rate(model, image, n, batch=batch, seconds=1.0 if quick else 4.0)
                 for n in threads_list if n > 1 and "onnxruntime" in engines
                 for batch in sorted({JOB_BATCH} if quick else {JOB_BATCH, fastest or JOB_BATCH})]
    return {"model": bundle.spec.name, "model_sha256": bundle.sha256, "flops": flops,
            "processes": with_peak(processes, flops["flops"], machine),
            "rows": with_peak(rows, flops["flops"], machine),
            "forward_only": with_peak(forward, flops["flops"], machine),
            "batch_sizes": list(batch_sizes), "threads": list(threads_list)}


def rate(section: dict, engine: str, threads: int, batch: int = JOB_BATCH) -> float | None:
    """The measured windows per second of one configuration, or None when not measured."""
    for row in section.get("rows", []):
        if (row["engine"], row["threads"], row["batch"]) == (engine, threads, batch):
            return row["per_s"]
    return None


_MARK = "tilescan-engine-rate:"
_READY = "tilescan-engine-ready"


def picture_share(image: str, size: int, batch: int, share: int, shares: int) -> list:
    """Every window (stride 16) of share ``share`` of ``shares`` of ``image``'s window rows, as uint8 batches.

    The shares are contiguous runs of window rows, as Spark's bands are.
    """
    from pixels import read_image
    from scoring.windows import window_batches
    from tiling.grid import WindowGrid

    pixels, _ = read_image(image, min_side=size)
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], size, 16)
    ys = np.array_split(np.asarray(grid.ys), shares)[share]
    return [np.ascontiguousarray(b) for _, b in window_batches(pixels, ys, grid.xs, size, batch)]


def _child_rate(model: str, image: str | None, engine: str, batch: int, seconds: float, share: str | None) -> int:
    """One of :func:`processes_rate`'s processes: load, say ready, wait for the go, then time
    ``seconds`` of one batch again and again, or (``share`` ``"K/N"``) one pass over its share
    of the picture's windows."""
    from core.bundle import load_bundle
    from engines import create_engine

    bundle = load_bundle(model)
    loaded = create_engine(bundle, engine, threads=1)
    if share:
        k, n = (int(part) for part in share.split("/"))
        batches = picture_share(image, bundle.spec.size, batch, k, n)
        loaded.predict(batches[0])
    else:
        data = cut_batches(image, bundle.spec.size, batch)
        loaded.predict(data)
    print(_READY, flush=True)
    sys.stdin.readline()
    if share:
        def once_through():
            for one in batches:
                loaded.predict(one)

        # Warm already, from its first batch above.
        result = measure_rate(once_through, sum(len(b) for b in batches), min_seconds=0, warm_up=False)
    else:
        result = measure_rate(lambda: loaded.predict(data), batch, min_seconds=seconds)
    print(_MARK + json.dumps(result), flush=True)
    return 0


def processes_rate(model: str, image: str | None, processes: int, *, engine: str = "onnxruntime",
                   batch: int = JOB_BATCH, seconds: float = 3.0, whole_picture: bool = False) -> dict:
    """Windows per second of ``processes`` separate 1-thread engine processes timed together.

    The layout of a Spark executor at local[N]: N Python workers, 1 thread each, sharing
    the caches and memory bandwidth; the sum of their rates is the ceiling for the job.
    Every process loads first; all start timing on one signal. Each times one batch cut
    from the middle of ``image`` again and again for ``seconds``, or, ``whole_picture``,
    one pass over its share of every window of ``image`` (the rate varies with the
    windows' content from batch to batch).
    """
    if whole_picture and not image:
        raise ValueError("`whole_picture` needs an `image`")
    command = [sys.executable, "-m", "benchmarks.engine", "--child-rate", "--model", model, "--engine-name", engine,
               "--batch", str(batch), "--seconds", str(seconds), *(["--image", image] if image else [])]
    children = [subprocess.Popen(command + (["--share", f"{k}/{processes}"] if whole_picture else []),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for k in range(processes)]
    try:
        for child in children:
            for line in child.stdout:
                if line.strip() == _READY:
                    break
            else:
                raise RuntimeError(f"engine child exited {child.wait()} before it was ready")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        rates = []
        for child in children:
            out, _ = child.communicate()
            lines = [line for line in out.splitlines() if line.startswith(_MARK)]
            if child.returncode or not lines:
                raise RuntimeError(f"engine child exited {child.returncode}: {out[-1000:]}")
            rates.append(json.loads(lines[-1][len(_MARK):]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return {"engine": engine, "processes": processes, "threads": 1, "batch": batch,
            "windows": "whole picture" if whole_picture else "one batch",
            "per_s": sum(r["per_s"] for r in rates), "per_process": [r["per_s"] for r in rates],
            "cpu_per_wall": sum(r["cpu_per_wall"] for r in rates)}


def processes(section: dict, count: int, batch: int = JOB_BATCH) -> float | None:
    """The summed rate of ``count`` 1-thread engine processes, or None when not measured."""
    for row in section.get("processes", []):
        if (row["processes"], row["batch"]) == (count, batch):
            return row["per_s"]
    return None


def best_batch(section: dict, engine: str = "onnxruntime", threads: int = 1) -> int | None:
    """The batch size at which ``engine`` on ``threads`` threads was fastest."""
    rows = [r for r in section.get("rows", []) if (r["engine"], r["threads"]) == (engine, threads)]
    return max(rows, key=lambda r: r["per_s"])["batch"] if rows else None


def main(argv=None) -> int:
    import argparse

    from benchmarks import machine as machine_mod
    from benchmarks import report
    from benchmarks.common import base_parser, configure_logging, core_counts, inputs_from_args

    p = base_parser(__doc__)
    for name, kind in (("--child-rate", None), ("--engine-name", str), ("--batch", int), ("--seconds", float),
                       ("--share", str)):
        if kind is None:
            p.add_argument(name, action="store_true", help=argparse.SUPPRESS)
        else:
            p.add_argument(name, type=kind, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_rate:
        return _child_rate(args.model, args.image, args.engine_name, args.batch, args.seconds, args.share)
    configure_logging()
    inputs = inputs_from_args(args)
    machine = machine_mod.run(quick=args.quick)
    print(report.engine_section(run(inputs.model, inputs.image, threads_list=core_counts(), machine=machine,
                                    quick=args.quick), machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
