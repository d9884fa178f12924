"""The machine: CPU, cores, versions, its theoretical FP32 peak and a measured sgemm rate.

    python -m benchmarks.machine [--quick]

Theoretical peak = cores x GHz x FP32 FLOPs per cycle per core, the last from the
/proc/cpuinfo flags: avx512f 64 (two 512-bit FMA units: 2 x 16 lanes x 2 FLOPs), avx2 with
fma 32, avx 16, else 8. Some cores with avx512f have one 512-bit FMA unit (or split
512-bit work in two): there the true peak is half; a VM without cpufreq shows its nominal
clock, and turbo runs above it. The measured sgemm is the rate really achievable: an
n x n float32 matrix product through numpy's BLAS and through ONNX Runtime's own kernels
(MLAS), at 1 thread and at all cores; the better of the two is the yardstick (an old
OpenBLAS may pick AVX2 kernels on a CPU it does not know).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np

from core.project import installed_versions

__all__ = ["describe", "flops_per_cycle", "blas_info", "measure_sgemm", "measure_ort_sgemm", "run", "main"]

PACKAGES = ("numpy", "onnxruntime", "onnx", "mxnet", "pyspark", "pyarrow", "pillow", "ml_dtypes")


def _cpuinfo() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in info:  # the first processor's block
                    info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def flops_per_cycle(flags) -> int:
    """FP32 FLOPs per cycle per core from the CPU flags (see the module docstring)."""
    flags = set(flags)
    if "avx512f" in flags:
        return 64
    if "avx2" in flags and "fma" in flags:
        return 32
    if "avx" in flags:
        return 16
    return 8


def _max_ghz(info: dict) -> tuple[float | None, str]:
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as fh:
            return int(fh.read()) / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    try:
        return float(info["cpu MHz"]) / 1000, "/proc/cpuinfo cpu MHz (no cpufreq: a VM's nominal clock)"
    except (KeyError, ValueError):
        return None, "unknown"


def _java_version() -> str | None:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else None


def describe() -> dict:
    """CPU model, cores, clock, peak, memory, load and package versions."""
    info = _cpuinfo()
    flags = info.get("flags", "").split()
    ghz, ghz_source = _max_ghz(info)
    cores = len(os.sched_getaffinity(0))
    per_cycle = flops_per_cycle(flags)
    peak_core = ghz * per_cycle if ghz else None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = int(fh.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem_gb = None
    versions = installed_versions(PACKAGES)
    versions["java"] = _java_version()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": info.get("model name", platform.processor() or "unknown"),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "ghz": ghz,
        "ghz_source": ghz_source,
        "simd_flags": [f for f in flags if f.startswith(("avx", "fma", "amx"))],
        "fp32_flops_per_cycle": per_cycle,
        "peak_gflops_per_core": peak_core,
        "peak_gflops": peak_core * cores if peak_core else None,
        "memory_gb": mem_gb,
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "versions": versions,
    }


def blas_info() -> str:
    """numpy's BLAS and the kernels it picked (an old OpenBLAS may not know a new CPU)."""
    from threadpoolctl import threadpool_info

    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')} kernels)"
    return "unknown"


def measure_sgemm(n: int, threads: int, *, repeats: int = 3) -> float:
    """Best GFLOP/s of an ``n x n`` float32 matmul through numpy's BLAS on ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        return _best_gflops(lambda: a @ b, n, repeats)


def measure_ort_sgemm(n: int, threads: int, *, repeats: int = 3) -> float:
    """Best GFLOP/s of an ``n x n`` float32 MatMul in ONNX Runtime (its MLAS kernels, the engine's own)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.random((n, n), dtype=np.float32), "b")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "sgemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    a = rng.random((n, n), dtype=np.float32)
    onnx.checker.check_model(model)
    return _best_gflops(lambda: session.run(None, {"a": a}), n, repeats)


def _best_gflops(call, n: int, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def run(*, quick: bool = False) -> dict:
    """:func:`describe` plus sgemm measured through numpy's BLAS and through ONNX Runtime."""
    machine = describe()
    n, repeats = (512, 2) if quick else (2048, 5)
    threads = sorted({1, machine["cores"]})
    numpy_rates = {str(t): measure_sgemm(n, t, repeats=repeats) for t in threads}
    ort_rates = {str(t): measure_ort_sgemm(n, t, repeats=repeats) for t in threads}
    machine["sgemm"] = {
        "n": n, "numpy_blas": blas_info(), "numpy_gflops": numpy_rates, "onnxruntime_gflops": ort_rates,
        # The best measured is what "achievable" means below.
        "gflops": {t: max(numpy_rates[t], ort_rates[t]) for t in numpy_rates},
    }
    # A VM's nominal clock can sit below turbo: a measured rate above the "peak" proves it.
    implied = machine["sgemm"]["gflops"]["1"] / machine["fp32_flops_per_cycle"]
    if machine["ghz"] and implied > machine["ghz"]:
        machine["ghz_nominal"] = machine["ghz"]
        machine["ghz"] = implied
        machine["ghz_source"] += (f"; raised from {machine['ghz_nominal']:.2f} to the clock the measured sgemm "
                                  "implies, a lower bound")
        machine["peak_gflops_per_core"] = implied * machine["fp32_flops_per_cycle"]
        machine["peak_gflops"] = machine["peak_gflops_per_core"] * machine["cores"]
    return machine


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import base_parser, configure_logging

    args = base_parser(__doc__).parse_args(argv)
    configure_logging()
    print(report.machine_section(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
