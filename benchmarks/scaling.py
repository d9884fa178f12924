"""Scaling on a real standalone cluster: the same picture on 1 and 2 single-core workers.

    python -m benchmarks.scaling [--model models/default] [--image PNG] [--quick]

Starts ``cluster_scripts/local_cluster.sh up 2 --cores 1`` on free ports, submits
``app/score.py`` with ``--total-executor-cores 1`` and then ``2`` (so one or both workers
run executors), and reports wall time, the Spark job's time, the tasks' span, the
speed-up, and the strip balance (largest strip's windows / mean) of each run. On a
two-core machine the driver and the JVMs share the cores with the workers, so the
speed-up here is a floor for what separate nodes give.
"""
from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.common import base_parser, configure_logging, inputs_from_args, spark_env
from benchmarks.end_to_end import run_score
from core.project import project_path
from localservices.ports import free_ports

__all__ = ["run", "main"]


LOCAL_CLUSTER = project_path("cluster_scripts", "local_cluster.sh")


def _cluster(*args, run_dir: str) -> None:
    env = dict(spark_env(), TILESCAN_PYTHON=sys.executable)
    subprocess.run([LOCAL_CLUSTER, *map(str, args), "--dir", run_dir], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def _submit(master: str, cores: int, model: str, image: str, out: str) -> dict:
    result = run_score(model, image, out, cores=cores, engine=None, master=master,
                       submit_args=("--total-executor-cores", str(cores), "--executor-memory", "2g"))
    manifest, wall = result["manifest"], result["command_s"]
    t, c = manifest["timings_s"], manifest["counts"]
    return {"workers": cores, "command_s": wall, "spark_job_s": t["spark_job_s"],
            "first_to_last_task_s": t["first_to_last_task_s"], "python_workers": t["python_workers"],
            "strips": len(c["strip_windows"]), "strip_balance": c["strip_balance"],
            "windows": c["windows_scored"], "windows_per_s": c["windows_scored"] / t["first_to_last_task_s"]}


def run(model: str, image: str, work: str) -> dict:
    run_dir = os.path.join(work, "scaling-cluster")
    port, webui = free_ports(2)
    _cluster("up", 2, "--cores", 1, "--memory", "2g", "--port", port, "--webui-port", webui, run_dir=run_dir)
    try:
        master = f"spark://127.0.0.1:{port}"
        runs = [_submit(master, n, model, image, os.path.join(work, f"scaling-{n}")) for n in (1, 2)]
    finally:
        _cluster("down", run_dir=run_dir)
    one, two = runs
    return {
        "runs": runs,
        "speedup_command": one["command_s"] / two["command_s"],
        "speedup_job": one["spark_job_s"] / two["spark_job_s"],
        "speedup_tasks": one["first_to_last_task_s"] / two["first_to_last_task_s"],
    }


def main(argv=None) -> int:
    args = base_parser(__doc__).parse_args(argv)
    configure_logging()
    inputs = inputs_from_args(args)
    result = run(inputs.model, inputs.image, inputs.work)
    for r in result["runs"]:
        print(f"{r['workers']} worker(s): {r['command_s']:.1f}s command, {r['spark_job_s']:.1f}s job, "
              f"{r['first_to_last_task_s']:.1f}s tasks ({r['windows_per_s']:,.0f} windows/s), "
              f"{r['strips']} strips, balance {r['strip_balance']:.3f}")
    print(f"speed-up 1 -> 2 workers: {result['speedup_command']:.2f}x command, {result['speedup_job']:.2f}x job, "
          f"{result['speedup_tasks']:.2f}x tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
