"""BENCHMARKS.md from the raw figures: one markdown section per benchmark.

    python -m benchmarks.report [--json benchmarks/results.json] [--md BENCHMARKS.md]

Rewrites BENCHMARKS.md from a results file (or, with no results file, the template with
every table empty). Each ``*_section`` function takes one section of the results and
returns its markdown; the benchmark scripts print the same text.
"""
from __future__ import annotations

import json
import os
import sys

from core.project import project_path, project_relative

__all__ = ["render", "write", "machine_section", "engine_section", "end_to_end_section", "breakdown_section",
           "baseline_section", "quantize_section", "collection_section", "memory_section", "dense_section",
           "merge_section", "storage_section", "connect_section", "main"]

NOT_RUN = "_Not measured yet: run `make bench`._"


def _n(value, digits: int = 0) -> str:
    """A number for a table: thousands separators, ``—`` for None."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _sgemm_sources(m: dict) -> str:
    s = m.get("sgemm", {})
    cores = str(m["cores"])
    parts = []
    sources = (("numpy_gflops", f"numpy, {s.get('numpy_blas')}"), ("onnxruntime_gflops", "ONNX Runtime MatMul"))
    for key, label in sources:
        rates = s.get(key, {})
        parts.append(f"{label} {_n(rates.get('1'))} / {_n(rates.get(cores))}")
    return "; ".join(parts)


def machine_section(m: dict | None) -> str:
    if not m:
        return "## Machine\n\n" + NOT_RUN
    sgemm = m.get("sgemm", {}).get("gflops", {})
    one, everything = sgemm.get("1"), sgemm.get(str(m["cores"]))
    v = m["versions"]
    rows = [
        ["CPU", f"{m['cpu_model']}, {m['cores']} cores usable ({m['logical_cpus']} logical CPUs)"],
        ["clock", f"{_n(m['ghz'], 2)} GHz ({m['ghz_source']})"],
        ["SIMD", ", ".join(m["simd_flags"]) or "—"],
        ["FP32 peak, theoretical", f"{m['fp32_flops_per_cycle']} FLOP/cycle/core: {_n(m['peak_gflops_per_core'])} "
                                   f"GFLOP/s per core, {_n(m['peak_gflops'])} GFLOP/s in all"],
        ["FP32 sgemm, measured", f"{_n(one)} GFLOP/s on 1 thread, {_n(everything)} GFLOP/s on {m['cores']} "
                                 f"(n = {m.get('sgemm', {}).get('n')}, the better of: {_sgemm_sources(m)})"],
        ["memory", f"{_n(m['memory_gb'], 1)} GB"],
        ["load average at start", " / ".join(f"{x:.2f}" for x in m["load_average"]) + " (1, 5, 15 min)"],
        ["platform", m["platform"]],
        ["versions", ", ".join(f"{k} {val}" for k, val in v.items() if val)],
    ]
    return "## Machine\n\n" + _table(["", ""], rows)


def engine_section(e: dict | None, machine: dict | None = None) -> str:
    head = "## 1. Engine throughput\n\n"
    if not e:
        return head + NOT_RUN
    f = e["flops"]
    by_op = ", ".join(f"{op} {_n(macs)}" for op, macs in f["macs_by_op"].items())
    text = (f"Model `{e['model']}`: {_n(f['macs'] / 1e6, 2)} M multiply-adds per 32×32 window ({by_op}), "
            f"{_n(f['flops'] / 1e6, 1)} MFLOP, {_n(f['parameters'])} parameters. Pre-cut uint8 batches through "
            "`Engine.predict` (normalisation included), one process, interleaved rounds, best round shown "
            "(median beside it). CPU/wall ≈ threads really used.\n\n")
    rows = [[r["engine"], r["threads"], r["batch"], _n(r["per_s"]), _n(r["median_per_s"]), _n(r["cpu_per_wall"], 2),
             _n(r["gflops"], 1), _pct(r.get("of_peak")), _pct(r.get("of_sgemm"))]
            for r in sorted(e["rows"], key=lambda r: (r["engine"], r["threads"], r["batch"]))]
    for r in e.get("forward_only", []):
        rows.append([f"{r['engine']} (network only)", r["threads"], r["batch"], _n(r["per_s"]), _n(r["median_per_s"]),
                     _n(r["cpu_per_wall"], 2), _n(r["gflops"], 1), _pct(r.get("of_peak")), _pct(r.get("of_sgemm"))])
    text += _table(["engine", "threads", "batch", "windows/s", "median", "CPU/wall", "GFLOP/s", "of peak",
                    "of sgemm"], rows)
    if e.get("processes"):
        text += ("\n\nN separate 1-thread engine processes timed together (the layout of N Spark tasks, without "
                 "Spark):\n\n")
        one = {r["batch"]: r["per_s"] for r in e["rows"] if r["engine"] == "onnxruntime" and r["threads"] == 1}
        rows = [[r["engine"], r["processes"], r["batch"], _n(r["per_s"]), " + ".join(_n(v) for v in r["per_process"]),
                 _n(r["per_s"] / (one[r["batch"]] * r["processes"]), 2) if one.get(r["batch"]) else "—",
                 _n(r["cpu_per_wall"], 2), _pct(r.get("of_peak"))] for r in e["processes"]]
        text += _table(["engine", "processes", "batch", "windows/s", "per process", "scaling vs 1 thread × N",
                        "CPU/wall", "of peak"], rows)
    best = {}
    for r in e["rows"]:
        key = (r["engine"], r["threads"])
        if key not in best or r["per_s"] > best[key]["per_s"]:
            best[key] = r
    text += "\n\nFastest batch: " + "; ".join(f"{n} at {t} thread{'s' if t > 1 else ''}: {r['batch']}"
                                               for (n, t), r in sorted(best.items())) + "."
    text += ("\n\n“of peak”: of the theoretical FP32 peak of the cores used; “of sgemm”: of the measured "
             "1-thread sgemm rate (the better of numpy and ONNX Runtime) times the threads. “network only”: "
             "the ONNX session on already-normalised float32 input, so the gap to the row above is the uint8 → "
             "float normalisation.")
    return head + text


def end_to_end_section(e: dict | None) -> str:
    head = "## 2. End to end: `spark-submit app/score.py`\n\n"
    if not e or not e.get("runs"):
        return head + NOT_RUN
    text = (f"`{project_relative(e['image'])}`, engine "
            f"{e['engine']}, batch {e['batch_size']}, local[N] with 1 thread per task. Windows/s from the first "
            "task's start to the last task's end; the Spark job and the whole command (JVM start-up, reading, "
            "merging, writing) beside it.\n\n")
    rows = []
    for r in e["runs"]:
        rows.append([r["cores"], r.get("batch_size", e["batch_size"]), _n(r["windows"]), r["tasks"],
                     _n(r["first_to_last_task_s"], 1), _n(r["windows_per_s"]),
                     _n(r["engine_1_thread_x_n_per_s"]), _n(r["ratio_to_engine_1_thread_x_n"], 2),
                     _n(r.get("engine_n_processes_per_s")), _n(r.get("ratio_to_engine_n_processes"), 2),
                     _n(r["engine_n_threads_per_s"]), _n(r["ratio_to_engine_n_threads"], 2),
                     f"{_n(r['spark_job_s'], 1)} ({_n(r['spark_job_windows_per_s'])}/s)", _n(r["command_s"], 1)])
    text += _table(["N", "batch", "windows", "tasks", "first→last task s", "windows/s", "engine 1 thread × N",
                    "ratio", "engine N processes", "ratio",
                    "engine N threads", "ratio", "Spark job s", "command s"], rows)
    verdicts = []
    for r in e["runs"]:
        ratio = r["ratio_to_engine_1_thread_x_n"]
        if ratio is not None:
            verdicts.append(f"local[{r['cores']}] at batch {r.get('batch_size', e['batch_size'])}: {ratio:.2f} of the "
                            "engine's rate "
                            f"({'meets' if ratio >= e['target_ratio'] else 'misses'} the {e['target_ratio']} target)")
    text += "\n\n" + "; ".join(verdicts) + "." if verdicts else ""
    text += ("\n\nWhere the N cores' time went between the first task's start and the last task's end "
             "(share of N × that span):\n\n")
    keys = ["inference_at_engine_rate", "inference_sharing_cores", "inference_slower_in_spark", "cutting_and_rows",
            "model_load", "outside_scoring"]
    labels = ["inference at the engine's rate", "N processes sharing the cores", "inference slower in Spark",
              "cutting + row selection", "model load", "outside scoring (worker start, task and result transfer, gaps)"]
    rows = [[r["cores"], r.get("batch_size", e["batch_size"]), *(_pct(r["gap"]["fraction"].get(k)) for k in keys),
             _n(r["gap"]["capacity_core_s"], 1)] for r in e["runs"]]
    text += _table(["N", "batch", *labels, "core-s"], rows)
    return head + text


def scaling_section(s: dict | None) -> str:
    if not s:
        return "## Scaling on a standalone cluster\n\n_Not measured in this run._"
    rows = [[r["workers"], _n(r["command_s"], 1), _n(r["spark_job_s"], 1), _n(r["first_to_last_task_s"], 1),
             _n(r["windows_per_s"]), r["strips"], _n(r["strip_balance"], 3)] for r in s["runs"]]  # strips: bands
    return ("## Scaling on a standalone cluster\n\n"
            "`cluster_scripts/local_cluster.sh up 2 --cores 1`, then `spark-submit --total-executor-cores N`. "
            "Strip balance: the largest strip's windows over the mean. On a two-core machine the driver and the "
            "JVMs share the cores with the workers, so this speed-up is a floor for separate nodes.\n\n"
            + _table(["workers", "command s", "Spark job s", "tasks s", "windows/s", "strips", "strip balance"], rows)
            + f"\n\nSpeed-up from 1 to 2 workers: {s['speedup_command']:.2f}x for the whole command, "
              f"{s['speedup_job']:.2f}x for the Spark job, {s['speedup_tasks']:.2f}x for the tasks' span.")


def breakdown_section(b: dict | None) -> str:
    head = "## 3. Where the time goes\n\n"
    if not b:
        return head + NOT_RUN
    d, x = b["driver_s"], b["executor_core_s"]
    text = (f"One run in process on {b['master']} ({b['size'][0]}×{b['size'][1]} px, {_n(b['windows'])} windows, "
            f"{b['tasks']} tasks, {b['python_workers']} Python workers, engine {b['engine']}), from the manifest's "
            "`timings_s`.\n\nDriver (wall seconds):\n\n")
    labels = {
        "check_destination": "check + probe the destination", "load_verify_model": "load + verify the bundle, "
        "load the engine once", "read_header": "read the picture's header", "plan": "plan the tasks",
        "spark_job": "Spark job (both stages: scoring, then finishing the picture)",
        "of_which_first_to_last_task": "  of which: first scoring task's start → last one's end",
        "commit": "commit (manifest, moves, `_SUCCESS`)", "other": "other (shipping code, broadcast, gaps)",
        "total": "total",
    }
    total = d["total"]
    rows = [[labels[k], _n(v, 2), _pct(v / total if v is not None and not k.startswith("of_which") and k != "total"
                                      else None)] for k, v in d.items()]
    text += _table(["stage", "s", "share"], rows)
    text += "\n\nExecutors (core-seconds, summed over tasks; capacity = cores × first→last scoring task):\n\n"
    labels = {"model_load": "model load", "band_reads": "band reads (decode from storage)",
              "inference_predict": "inference (`predict_s`, normalisation included)",
              "cutting_and_rows": "window cutting + row selection (`score_s − predict_s`)",
              "finish_picture": "finishing the picture (second stage)", "of_which_merge": "  of which: merge",
              "of_which_outputs": "  of which: outputs (Parquet, COCO, overlay)",
              "of_which_write": "  of which: writes", "outside": "outside (worker start, transfer, gaps)",
              "capacity": "capacity"}
    rows = [[labels[k], _n(v, 2), "—" if k.startswith("of_which") else _pct(v / x["capacity"])]
            for k, v in x.items() if k in labels]
    text += _table(["stage", "core-s", "share"], rows)
    p = b["profile"]
    text += (f"\n\nProfile of `score_strip` on band {p['strip']} ({_n(p['windows'])} windows, {p['engine']}, "
             f"{p['threads']} thread, batch {p['batch_size']}; {_n(p['wall_s'], 2)} s under cProfile), "
             "top 10 by cumulative time:\n\n")
    rows = [[f"`{r['function']}`", r["calls"], _n(r["tottime_s"], 3), _n(r["cumtime_s"], 3), _pct(r["cum_share"])]
            for r in p["top"]]
    text += _table(["function", "calls", "own s", "cumulative s", "share"], rows)
    return head + text


def baseline_section(b: dict | None) -> str:
    head = "## 4. Against the reference design's manner\n\n"
    if not b:
        return head + NOT_RUN
    text = (f"Same picture ({_n(b['windows'])} windows), same SparkSession ({b['master']}), engine caches "
            "emptied before each; the baseline is a small job of its own (`benchmarks/baseline.py`), ours a "
            "whole run (which also writes its outputs in its job).\n\n")
    names = {"baseline": "baseline: pixels from the driver, 1 strip per worker, model loaded every task",
             "ours": "ours: executors read their bands, 2 tasks per core, model loaded once per worker"}
    rows = [[names[k], r["engine"], r["batch_size"], r["strips"], _n(r["spark_job_s"], 1), _n(r["windows_per_s"])]
            for k, r in b["designs"].items()]
    text += _table(["design", "engine", "batch", "tasks", "Spark job s", "windows/s"], rows)
    text += f"\n\nOurs is **{b['speedup']:.2f}×** the baseline's rate (Spark job windows/s)."
    return head + text


def quantize_section(q: dict | None) -> str:
    head = "## 5. Making it fast: graph optimisation and int8\n\n"
    if not q:
        return head + NOT_RUN
    c = q["calibration"]
    text = (f"Int8: static quantisation (`onnxruntime.quantization.quantize_static`, batch norms folded first, "
            f"min/max calibration on {c['images']} images: {c['source']}; weights per channel in a 7-bit range, "
            "so that every CPU's kernels add them exactly (section 6), activations uint8; the softmax head stays "
            "float). Engine `onnxruntime-int8` on a bundle's `onnx-int8` file; the default engine only for a "
            "bundle whose int8 file held AP50 on its validation collages on every kind of CPU recorded "
            "(`recommended.engine` in `model.json`).\n\n")
    base = {r["threads"]: r["per_s"] for r in q["speed"] if r["variant"] == "fp32 all"}
    rows = [[r["variant"], r["threads"], _n(r["per_s"]), _n(r["median_per_s"]), _n(r["cpu_per_wall"], 2),
             _n(r["per_s"] / base[r["threads"]], 2) if base.get(r["threads"]) else "—"]
            for r in sorted(q["speed"], key=lambda r: r["threads"])]  # stable: levels, then int8
    text += _table(["variant", "threads", "windows/s", "median", "CPU/wall", "× fp32 all"], rows)
    text += "\n\nAccuracy beside speed:\n\n"
    rows = []
    for name, a in q["accuracy"].items():
        ap = a.get("collage", {}).get("classes", {})
        rows.append([name, _n(a.get("argmax_agreement"), 4) if "argmax_agreement" in a else "(reference)",
                     _n(a.get("max_abs_prob_diff"), 3), _n(a.get("test_images"), 4), _n(a.get("test_canvas_tiles"), 4),
                     *(_n(ap.get(cls, {}).get("ap50"), 3) for cls in ("car", "boat")),
                     _n(a.get("collage", {}).get("boxes")), _n(a.get("collage", {}).get("spark_job_windows_per_s"))])
    text += _table(["model", f"argmax agreement ({q['agreement_windows']} windows)", "max abs Δp",
                    "CIFAR-10 test balanced acc.", "test canvas tiles balanced acc.", "collage AP50 car",
                    "collage AP50 boat", "boxes", "Spark job windows/s"], rows)
    text += ("\n\nAP: the collage scored on the same SparkSession as sections 3 and 4 (score.py's defaults), "
             "evaluated against its ground truth; the last column is that run's Spark job.")
    sizes = ", ".join(f"{name}: {_n(v['int8_bytes'] / 1024)} KiB (float {_n(v['float_bytes'] / 1024)} KiB), "
                      f"quantised in {_n(v['quantize_s'], 1)} s" for name, v in q["bundles"].items())
    text += f"\n\nFiles: {sizes}."
    if any(a.get("subset") for a in q["accuracy"].values()):
        text += " Balanced accuracy on a test subset only (quick run)."
    return head + text


def cpus_section(c: dict | None) -> str:
    head = "## 6. The same answers on every CPU: int8 against float32 on each kind of x86 CPU\n\n"
    if not c:
        return head + NOT_RUN
    text = ("ONNX Runtime picks its kernels by instruction set. Each kind of CPU is measured in a process of its "
            "own: this CPU, then the same cores with CPUID masked so that ONNX Runtime (and /proc/cpuinfo) see an "
            "older CPU's instruction sets (`localservices/cpus.py`): the older CPU's kernels run natively, so their "
            "numbers are that CPU's and their speed that of these cores running them. Rates at 1 thread, the "
            "job's batch; agreement with float32 on "
            f"{_n(c['kinds'][0]['windows'])} windows of the picture; the golden check as a run does it when the "
            "engine loads; “same as this CPU”: outputs equal bit for bit.\n\n")
    rows = []
    for kind in c["kinds"]:
        base = kind["variants"]["float32"]["per_s"]
        for label, v in kind["variants"].items():
            golden = v["golden"]
            diff = golden.get("difference") or {}
            rows.append([f"{kind['cpu']}", ", ".join(kind["isa"]) or "no AVX2", label, _n(v["per_s"]),
                         _n(v["per_s"] / base, 2), _n(v["top_class_agreement"], 4), _n(v["max_abs_prob_diff"], 3),
                         f"{golden['status']} ({_n(diff.get('probability_mean'), 3)})" if diff else golden["status"],
                         "yes" if v["same_as_this_cpu"] else "**no**"])
    text += _table(["CPU", "instruction sets", "model", "windows/s", "× float32", "top class = float32",
                    "max abs Δp", "golden check (mean abs Δp)", "same as this CPU"], rows)
    if c.get("masked_kinds_missing"):
        text += f"\n\nOlder CPUs not stood in for here: {c['masked_kinds_missing']}."
    if c.get("full_range_copy"):
        text += ("\n\n“int8, 8-bit weights”: a copy of the bundle quantised as before 7-bit weights became the "
                 "default (calibrated on CIFAR-10 training images, as section 5's copies are). Without VNNI, ONNX "
                 "Runtime's uint8 × int8 kernels add pairs of products in 16 bits, which 8-bit weights overflow; "
                 "7-bit weights never do, so every kernel's sums are exact and the answers the same everywhere.")
    return head + text


def collection_section(c: dict | None) -> str:
    head = "## 7. A collection in one run\n\n"
    if not c:
        return head + NOT_RUN
    o, sep, e = c["one_run"], c["separate"], c["engine"]
    text = (f"{c['pictures']} pictures of {c['size'][0]}×{c['size'][1]} ({_n(c['windows'])} windows), "
            f"local[{c['cores']}], engine {e['name']}: one `spark-submit app/score.py --image FOLDER`, against one "
            f"`spark-submit` per picture (a sample of {sep['sample']}, their mean times {c['pictures']}).\n\n")
    rows = [["one run", _n(o["command_s"], 1), _n(o["spark_job_s"], 1), o["tasks"], _n(o["windows_per_s_command"])],
            [f"separate runs (mean of {sep['sample']}: {_n(sep['mean_s'], 1)} s, "
             f"{_n(sep['spread_s'][0], 1)}–{_n(sep['spread_s'][1], 1)} s)", _n(sep["projected_total_s"], 0), "—",
             "—", _n(c["windows"] / sep["projected_total_s"])]]
    text += _table(["", "command s", "Spark job s", "tasks", "windows/s (whole command)"], rows)
    text += (f"\n\nOne run is **{c['speedup']:.1f}×** faster than the loop. Over its tasks' span it scores "
             f"{_n(o['windows_per_s_over_tasks'])} windows/s: **{c['ratio_to_engine']:.2f}** of the engine's own "
             f"rate on the same cores ({_n(e['per_s'])} windows/s: {e['processes']} separate 1-thread engine "
             "processes timed together).")
    return head + text


def _measured_alone(r: dict, why: str) -> str:
    """The sentence of a section measured in a run of its own (``run_all --update``): when, on what."""
    m = r.get("machine") or {}
    flags = set(m.get("simd_flags") or ())
    isa = ", ".join(name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("VNNI", "avx512_vnni"),
                                            ("AMX", "amx_int8")) if flag in flags)
    on = f" on {m['cpu_model']} ({m.get('cores')} cores; {isa or 'no AVX2'})" if m.get("cpu_model") else ""
    return f"Measured {r['measured']}{on}, in a run of this section alone ({why})."


def connect_section(r: dict | None) -> str:
    head = "## 12. Spark Connect against a classic session\n\n"
    if not r:
        return head + NOT_RUN
    text = (f"The {r['side']}×{r['side']} picture of cars and boats ({_n(r['windows'])} windows) scored by "
            "`score_images` at local[2], the model's own engine, each kind of session in a process of its own "
            f"after a warm-up run; {len(next(iter(r['rounds'].values())))} rounds alternating between the kinds, "
            "the best of each shown.")
    if r.get("measured"):
        text += " " + _measured_alone(r, "with nothing else running; its figures compare only with each other")
    text += "\n\n" + _table(["session", "best s", "windows/s", "every round s"],
                            [[name, _n(r["best_s"][name], 2), _n(r["windows_per_s"][name]),
                              ", ".join(f"{x:.2f}" for x in r["rounds"][name])] for name in r["best_s"]])
    text += (f"\n\nSpark Connect runs at **{r['connect_to_classic']:.2f}** of the classic session's speed "
             "(its stages are DataFrame operations: the tasks' results travel pickled through Arrow and a "
             "shuffle, where the classic path's RDD passes them on directly).")
    if r.get("baseline"):
        text += (f" The classic path runs at **{r['classic_to_baseline']:.2f}** of its speed at commit "
                 f"{r['baseline']}, before Spark Connect was supported.")
    text += " The outputs' counts are the same in every kind." if r.get("same_counts") else \
        " **The outputs' counts differ between the kinds.**"
    return head + text


def storage_section(r: dict | None) -> str:
    head = "## 11. Round trips to the lake\n\n"
    if not r:
        return head + NOT_RUN
    small, large = r["runs"]
    text = (f"A collection of {small['pictures']} and then {large['pictures']} pictures of {r['side']}×{r['side']} "
            "read from and written to the Azurite emulator (`spark-submit app/score.py --image az://C/in/ --out "
            "az://C/out`, local[2], each against a fresh emulator logging every request it serves). One more "
            f"picture costs **{r['per_picture']:.1f} requests**; a run costs {r['fixed']:.0f} more whatever its "
            f"size ({small['requests']:,} and {large['requests']:,} in all). On a real lake each is a round trip "
            "of tens of milliseconds, so the count is the figure to compare; Azurite's own time is not.\n\n")
    if r.get("measured"):
        text += _measured_alone(r, "request counts do not depend on load") + "\n\n"
    text += _table(["phase, per picture", "requests"],
                   [[k, _n(v, 1)] for k, v in sorted(r["per_picture_by_phase"].items(), key=lambda kv: -kv[1]) if v])
    text += "\n\n" + _table(["Blob operation, per picture", "requests"],
                            [[k, _n(v, 1)] for k, v in sorted(r["per_picture_by_operation"].items(),
                                                               key=lambda kv: -kv[1]) if v])
    before = r.get("before")
    if before:
        files = (f" (each picture then wrote {before['files_per_picture']} files, now {r['files_per_picture']})"
                 if before.get("files_per_picture") and r.get("files_per_picture") else "")
        text += (f"\n\nBefore the commit listed its folder once and read small pictures whole (commit "
                 f"{before['commit']}): {before['per_picture']:.1f} requests per picture and {before['fixed']:.0f} per "
                 f"run, in the same measurement{files}.")
    return head + text


def memory_section(m: dict | None) -> str:
    head = "## 8. Memory on big pictures\n\n"
    if not m:
        return head + NOT_RUN
    t = m["targets_mb"]
    text = (f"`python app/score.py --master local[2] --stride {m['stride']} --keep 0` in a fresh process, "
            "resident memory sampled from /proc every 0.2 s: the driver's Python (the process itself), the "
            "driver's JVM (its `java` child) and every executor Python worker (the JVM's Python children); "
            f"targets {t['driver_python']}, {t['driver_jvm']} and {t['executor_python']} MB.\n\n")
    rows = []
    for key, label in (("local", "tiled TIFF, local disk"), ("lake", "tiled BigTIFF, from and to Azurite")):
        r = m.get(key)
        if r:
            p = r["peaks_mb"]
            rows.append([f"{_n(r['side'])}×{_n(r['side'])} {label}", _n(r["side"] ** 2 / 1e6, 0),
                         _n(p["driver_python"]), _n(p["driver_jvm"]), _n(p["executor_python"]), _n(r["command_s"], 1),
                         "yes" if all(r["within_targets"].values()) else "**no**"])
    text += _table(["picture", "Mpx", "driver Python MB", "driver JVM MB", "executor worker MB", "command s",
                    "within targets"], rows)
    lake = m.get("lake")
    if lake:
        ref = lake["reference"]
        text += (f"\n\nThe BigTIFF ({_n(lake['bytes'] / 2**20)} MiB on disk, uploaded in "
                 f"{_n(lake['upload_s'], 1)} s): {_n(lake['windows'])} windows; on window rows {ref['rows']} "
                 f"({_n(ref['windows'])} windows) the run's probabilities differ from a single-process reference "
                 f"(the same engine on the same windows read with tifffile) by at most {ref['max_abs_diff']:.1e}.")
    if m.get("measured"):
        text += "\n\n" + _measured_alone(m, "with nothing else running")
    return head + text


def geotiff_section(g: dict | None) -> str:
    head = "## 13. A georeferenced scene: windows, heat map, boxes and viewer\n\n"
    if not g:
        return head + NOT_RUN
    p, t = g["peaks_mb"], g["targets_mb"]
    box = g["box_centre_error_px"]
    text = (f"A {_n(g['side'])}×{_n(g['side'])} tiled GeoTIFF in EPSG:{g['epsg']} ({g['pixel_size_m']} m per pixel) "
            f"with {g['objects']} CIFAR-10 test cars and boats at known map positions on the stride's grid, scored "
            f"by `python app/score.py --heatmap --master local[2]` in a fresh process (window {g['window']}, "
            f"stride {g['stride']}: {_n(g['windows'])} windows) in {_n(g['command_s'], 1)} s, memory sampled as in "
            "§8.\n\n")
    text += _table(["", "driver Python MB", "driver JVM MB", "executor worker MB"],
                   [["peak", _n(p["driver_python"]), _n(p["driver_jvm"]), _n(p["executor_python"])],
                    ["target", _n(t["driver_python"]), _n(t["driver_jvm"]), _n(t["executor_python"])]])
    text += (f"\n\n- Each object's own window (they lie on the stride's grid) is placed at the object's map position "
             f"to {g['heat_cell_error_px']:.2g} pixels by the heat map's georeference and to "
             f"{g['window_map_error_px']:.2g} by `windows.parquet`'s `map_x, map_y` (for the "
             f"{g['windows_kept']} of them `--keep` kept). Its class scores over 0.5 there for "
             f"{g['scored_over_half']} of the {g['objects']} objects, and peaks there (not on a neighbouring window) "
             f"for {g['peak_on_its_window']}.\n"
             f"- `detections.geojson` has a box of the right class within half a window of {g['found']} of the "
             f"{g['objects']} objects ({g['boxes']} boxes in all); their centres are {_n(box['median'], 1)} pixels "
             f"from the object's (median; at most {_n(box['max'], 1)}; {box['within_one_pixel']} within one pixel): "
             "the detector's box regression, not the georeference, which is exact.\n"
             f"- `heatmap.tif` ({_n(g['heatmap_bytes'] / 2**20, 1)} MiB) holds every window of the grid "
             f"({g['heatmap_nan']} NaN), equals `windows.parquet` on the {_n(g['windows_kept_rows'])} windows it "
             f"kept to {g['heatmap_vs_windows']:.1g}, and carries the input's georeference at the stride's pixel size "
             f"(to {g['heatmap_georef_error']:.1g} m).\n"
             f"- The viewer's pyramid: {_n(g['viewer']['files'])} files, {_n(g['viewer']['bytes'] / 2**20, 1)} MiB.")
    if g.get("measured"):
        text += "\n\n" + _measured_alone(g, "with nothing else running")
    return head + text


def dense_scoring_section(d: dict | None) -> str:
    head = "## 15. Dense-exact scoring against window by window\n\n"
    if not d:
        return head + NOT_RUN
    text = (f"A {_n(d['side'])}×{_n(d['side'])} picture in {d['strips']} bands, as an executor scores them, by one "
            f"1-thread engine in one process; the best of {d['rounds']} rounds. FLOPs: each path's own, counted "
            "from its ONNX graph (per window, or per dense pass over the pixels it takes in); the windows off the "
            "stride's grid go one by one on either path.\n\n")
    text += _table(["model", "engine", "stride", "path", "windows", "s", "windows/s", "Mpixel/s", "MFLOP/window",
                    "GFLOP/s"],
                   [[f"`{r['model']}`", r["engine"], r["stride"], r["path"], _n(r["windows"]), _n(r["seconds"], 2),
                     _n(r["windows_per_s"]), _n(r["pixels_per_s"] / 1e6, 2), _n(r["mflop_per_window"], 1),
                     _n(r["gflops_per_s"], 1)] for r in d["paths"]])
    if d.get("demo"):
        rows = []
        for r in d["demo"]:
            for picture, classes in r["accuracy"].items():
                rows.append([r["setup"], f"`{r['model']}`", r["stride"], r["engine"], r["path"], _n(r["windows"]),
                             " / ".join(_n(s, 1) for s in r["spark_job_s"]), picture,
                             ", ".join(f"{c} {v['ap50']:.3f}" for c, v in classes.items()),
                             ", ".join(f"{c} {v['ap']:.3f}" for c, v in classes.items())])
        text += ("\n\nThe demo's two collages scored by `app/score.py` in local mode (`--keep 0`, as `make demo`), "
                 "the ResNet detector (the default before the padding-free one, `models/resnet`) at stride 16 and "
                 "the default at its own defaults, alternately; Spark-job seconds of each run, and AP of the best "
                 "run's boxes.\n\n"
                 + _table(["setup", "model", "stride", "engine", "path", "windows", "Spark job s", "collage",
                           "AP50", "AP50:95"], rows)
                 + f"\n\nThe default's demo takes **{d['demo_ratio']:.2f}** of the ResNet's Spark-job time "
                   "(best against best).")
    if d.get("measured"):
        text += "\n\n" + _measured_alone(d, "with nothing else running")
    return head + text


def viewer_section(v: dict | None) -> str:
    head = "## 14. What the viewer costs\n\n"
    if not v:
        return head + NOT_RUN
    rounds = len(v["rounds"]["with"])
    return head + (
        f"The dense picture of §9 ({_n(v['side'])}×{_n(v['side'])} px, {_n(v['windows'])} windows, {_n(v['boxes'])} "
        f"boxes), in process on a warm local SparkSession, with its viewer (the default) and with `--no-viewer`, "
        f"alternately, {rounds} rounds; the best of each.\n\n"
        + _table(["", "run s"], [["with the viewer", _n(v["with_s"], 2)], ["`--no-viewer`", _n(v["without_s"], 2)],
                                 ["ratio", f"{v['ratio']:.3f}"]])
        + f"\n\nThe viewer's folder: {_n(v['files'])} files, {_n(v['bytes'] / 2**20, 1)} MiB (tiles and "
          f"OpenSeadragon); `viewer.html`, with the boxes in it: {_n(v['page_bytes'] / 2**10)} KiB."
        + (" " + _measured_alone(v, "with nothing else running") if v.get("measured") else ""))


def dense_section(d: dict | None) -> str:
    head = "## 9. The whole run on a picture dense with hits\n\n"
    if not d:
        return head + NOT_RUN
    rounds = max(len(r.get("rounds", [])) for r in d["runs"]) or 1
    text = (f"{d['side']}×{d['side']} px of cars and boats only ({_n(d['windows'])} windows, {_n(d['hits'])} hits, "
            f"{_n(d['boxes'])} boxes), local[{d['cores']}], in process on a warm SparkSession: everything from the "
            "checks to the commit, JVM and worker start-up excluded. Engine alone: "
            f"{d['cores']} separate 1-thread processes, each through its share of the picture's windows, timed "
            f"together. {rounds} rounds of a run then the engine alone; the best run and the best engine pass are "
            "shown. Seconds of the executors' work are core-seconds summed over tasks.\n\n")
    rows = []
    for r in d["runs"]:
        t = r["timings_s"]
        one = r.get("one_batch_rate")
        rows.append([r["engine"], _n(r["command_s"], 2), _n(r["windows_per_s"]), _n(r["engine_rate"]["per_s"]),
                     f"**{r['ratio_to_engine']:.2f}**", _n(one["per_s"]) if one else "—",
                     f"{r['ratio_to_one_batch']:.2f}" if one else "—", _n(t["spark_job_s"], 2),
                     _n(t["first_to_last_task_s"], 2), _n(t["task_inference_s"], 2), _n(t["task_read_s"], 2),
                     _n(t["finish_s"], 2)])
    text += _table(["engine", "whole run s", "windows/s", "engine alone windows/s", "ratio",
                    "one batch repeated windows/s", "ratio to it", "Spark job s", "first→last task s",
                    "inference core-s", "band reads core-s", "finishing s (merge, outputs, writes)"], rows)
    spread = [f"{r['engine']}: runs " + ", ".join(_n(x["command_s"], 2) for x in r["rounds"]) + " s; engine "
              + ", ".join(_n(x["engine_per_s"]) for x in r["rounds"]) + " windows/s; each round's own ratio "
              + ", ".join(f"{d['windows'] / x['command_s'] / x['engine_per_s']:.2f}" for x in r["rounds"])
              for r in d["runs"] if r.get("rounds")]
    if spread:
        text += ("\n\nEvery round (a run and the engine pass right after it see the machine in the same state, so each "
                 "round's own ratio is shown too): " + "; ".join(spread) + ".")
    text += ("\n\nThe engine's rate varies with the windows' content from batch to batch, so the engine alone goes "
             "through the same windows as the run; the rate of one batch from the middle of the picture, timed "
             "again and again (as before), is shown beside it.")
    return head + text


def merge_section(m: dict | None) -> str:
    head = "## 10. Merging at scale\n\n"
    if not m:
        return head + NOT_RUN
    rows = [[method, _n(r["seconds"], 2), _n(r["boxes"])] for method, r in m["merge"].items()]
    text = (f"`merge_hits` on {_n(m['hits'])} hits (32-pixel windows every 16 pixels, random scores, three classes), "
            "merge IoU 0.3:\n\n" + _table(["method", "seconds", "boxes"], rows))
    n = m["noise"]
    rows = [[os.path.basename(r["model"]), r["engine"], _n(r["windows"]), _n(r["hits"]), _n(r["boxes"]),
             _n(r["total_s"], 1), _n(r["spark_job_s"], 1), _n(r["merge_s"], 2), _pct(r["merge_share"])]
            for r in n["runs"]]
    text += (f"\n\nA {_n(n['side'])}×{_n(n['side'])} picture of uniform noise, a whole run each (stride 16):\n\n"
             + _table(["model", "engine", "windows", "hits", "boxes", "run s", "Spark job s", "merge s",
                       "merge share"], rows))
    return head + text


def _summary(results: dict) -> str:
    """The headline figures, one bullet per section that ran."""
    bullets = []
    e = results.get("engine")
    if e and e.get("rows"):
        for name in ("onnxruntime", "mxnet"):
            rows = [r for r in e["rows"] if r["engine"] == name and r["threads"] == 1]
            if rows:
                r = max(rows, key=lambda r: r["per_s"])
                bullets.append(f"{name} on 1 thread: {_n(r['per_s'])} windows/s at best (batch {r['batch']}), "
                               f"{_pct(r.get('of_peak'))} of the FP32 peak")
    x = results.get("end_to_end")
    for r in (x or {}).get("runs", []):
        ratio = r.get("ratio_to_engine_1_thread_x_n")
        if ratio is not None:
            worst = max((k for k in r["gap"]["fraction"] if k != "inference_at_engine_rate"),
                        key=lambda k: r["gap"]["fraction"][k])
            bullets.append(f"end to end at local[{r['cores']}], batch {r.get('batch_size', x['batch_size'])}: "
                           f"{_n(r['windows_per_s'])} "
                           f"windows/s, **{ratio:.2f}** of the engine's rate (target {x['target_ratio']}); largest "
                           f"other share: {worst.replace('_', ' ')} {_pct(r['gap']['fraction'][worst])}")
    b = results.get("baseline")
    if b:
        bullets.append(f"against the reference design's manner: **{b['speedup']:.2f}×**")
    q = results.get("quantize")
    if q:
        base = {r["threads"]: r["per_s"] for r in q["speed"] if r["variant"] == "fp32 all"}
        for name, a in q["accuracy"].items():
            if name == "fp32":
                continue
            speed = [r for r in q["speed"] if r["variant"] == name and r["threads"] == 1]
            fp = q["accuracy"]["fp32"]
            text = f"{name}: {speed[0]['per_s'] / base[1]:.2f}× fp32 on 1 thread" if speed and base.get(1) else name
            if a.get("test_images") is not None and fp.get("test_images") is not None:
                text += f"; CIFAR-10 test balanced accuracy {fp['test_images']:.4f} → {a['test_images']:.4f}"
            fap, iap = fp.get("collage", {}).get("classes", {}), a.get("collage", {}).get("classes", {})
            for cls in iap:
                if fap.get(cls, {}).get("ap50") is not None and iap[cls].get("ap50") is not None:
                    text += f"; AP50 {cls} {fap[cls]['ap50']:.3f} → {iap[cls]['ap50']:.3f}"
            bullets.append(text)
    k = results.get("cpus")
    if k:
        int8 = "int8, 7-bit weights"
        same = all(kind["variants"][int8]["same_as_this_cpu"] for kind in k["kinds"])
        speedups = ", ".join(f"{', '.join(kind['isa']) or 'no AVX2'}: "
                             f"{kind['variants'][int8]['per_s'] / kind['variants']['float32']['per_s']:.2f}×"
                             for kind in k["kinds"])
        bullets.append(f"int8 on {len(k['kinds'])} kinds of CPU: "
                       + ("the same outputs bit for bit on all" if same else "**outputs differ between kinds**")
                       + f"; × float32 at 1 thread: {speedups}")
    c = results.get("collection")
    if c:
        bullets.append(f"{c['pictures']} pictures in one run: **{c['speedup']:.1f}×** faster than one spark-submit "
                       f"each; **{c['ratio_to_engine']:.2f}** of the engine's rate over the tasks")
    m = results.get("memory")
    for key in ("local", "lake"):
        r = (m or {}).get(key)
        if r:
            p = r["peaks_mb"]
            bullets.append(f"{r['side']}² {'BigTIFF from Azurite' if key == 'lake' else 'tiled TIFF'}: driver Python "
                           f"{_n(p['driver_python'])} MB, JVM {_n(p['driver_jvm'])} MB, executor worker "
                           f"{_n(p['executor_python'])} MB")
    d = results.get("dense")
    if d:
        bullets.append(f"whole run on {d['side']}² dense with hits: " + ", ".join(
            f"**{r['ratio_to_engine']:.2f}** of the engine's rate with {r['engine']}" for r in d["runs"]))
    g = results.get("merge")
    if g:
        fuse = g["merge"]["fuse"]["seconds"]
        bullets.append(f"merge of {_n(g['hits'])} hits: {fuse:.1f} s (fuse)")
    return "## Summary\n\n" + "\n".join(f"- {b}" for b in bullets) if bullets else ""


METHOD = """## How these are measured

- `make bench` runs `python -m benchmarks.run_all` (about half an hour on 2 cores) and rewrites this
  file and `benchmarks/results.json`; `--quick` is a smoke run with tiny sizes that writes under
  `work/bench/quick/` instead. Each section also runs alone: `python -m benchmarks.engine`,
  `end_to_end`, `breakdown`, `baseline`, `quantize`, `cpus`, `collection`, `memory`, `dense`,
  `merge`, `storage`, `connect`, `machine` (all take `--model`,
  `--image`, `--quick`). Without `models/default`, a random-weights padding-free network (the same
  architecture) stands in, with a warning: speed figures hold, accuracy figures do not.
- Engine rates are timed in interleaved rounds (every configuration once per round), and the best
  round is reported with the median beside it: noise only ever slows a round down. CPU/wall shows
  how many cores a configuration really had.
- End to end is `spark-submit --master local[N] app/score.py` on the demo collage
  (`python -m app.collage`, 4000 px wide), the fastest of two runs per configuration, windows per
  second taken over the tasks' span (`timings_s.first_to_last_task_s`). Its ratio is to the engine
  at 1 thread times N (N tasks of 1 thread each) and to the engine at N threads.
- The gap to the engine is split, in core-seconds of the N cores over the tasks' span, with the
  manifest's task timings: inference at the engine's in-process 1-thread rate; what N separate
  1-thread engine processes timed together lose to sharing caches and memory bandwidth;
  inference running slower still inside Spark (the rest of `predict_s`); strip cutting and row
  selection (`score_s − predict_s`, which also holds pyarrow's one-off import of pandas in each
  Python worker); model loading; and the rest (Python worker start, task and result
  (de)serialisation and transfer, gaps, uneven strips).
- The baseline and ours run in one process on one SparkSession, engine caches emptied before
  each, alternating when repeated; the baseline is its own small job built from the same public
  pieces, ours a whole run (`scoring.pipeline.prepare` and `run`).
- Int8 models are built on copies of the bundle under `work/bench/`; the bundle itself is left
  alone. To ship one: `add_int8_model(bundle_dir, calibration_images)` from
  `training.quantize` (or `python -m app.quantize --model BUNDLE`), then `score.py --engine
  onnxruntime-int8`; `make train-default` does it for the default detector and validates it.
- Other CPUs: `benchmarks/cpus.py` runs each kind in its own process under
  `localservices/cpus.py`, a preloaded library that makes CPUID fault (arch_prctl
  `ARCH_SET_CPUID`, where the CPU and hypervisor offer CPUID faulting) and answers it with the
  older CPU's feature bits cleared, and masks /proc/cpuinfo to match. Numbers are the older
  kernels' exactly; speeds are those kernels on these cores, not on the older CPU itself.
  `make validate-int8` validates the bundle's int8 model the same way and records it in the bundle.
- Collections: the separate runs are a sample (an hour's loop otherwise); their mean times the
  number of pictures is the loop's projected time, with the sample's spread beside it.
- Memory: `python app/score.py` in a fresh process per picture, every process of its tree
  sampled from /proc (`benchmarks/procmem.py`); the BigTIFF goes through a fresh Azurite.
- "The engine's own rate on the same cores" is N separate 1-thread engine processes timed
  together on the picture's windows (Spark's layout without Spark), with the engine the run
  used: for the collection, one batch of them again and again; for the dense picture, each
  process through its share of all of them, once."""


def render(results: dict | None) -> str:
    """The whole of BENCHMARKS.md."""
    results = results or {}
    meta = results.get("meta", {})
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`python -m benchmarks.run_all`); the raw figures are in "
             "`benchmarks/results.json`. Every figure comes from the same run, so ratios between them hold on a "
             "noisy machine; rerun on a quiet one to compare with these.", ""]
    if meta:
        lines += [f"- date: {meta['date']}",
                  f"- model: `{meta['model']['name']}` (bundle sha256 `{meta['model']['sha256'][:12]}`)"
                  + (" — **random weights**: models/default was absent, so accuracy figures mean nothing"
                     if meta["model"]["random"] else ""),
                  f"- picture: `{meta['image']['path']}`, {meta['image']['width']}×{meta['image']['height']} px",
                  "- load average (1, 5, 15 min) at the end: "
                  + " / ".join(f"{x:.2f}" for x in meta.get("load_average_end", ())),
                  f"- command: `{meta['command']}`, {meta['total_s']:.0f} s in all"
                  + (" (**--quick smoke run: tiny sizes, figures not meaningful**)" if meta.get("quick") else ""), ""]
    else:
        lines += ["_Template: every table is filled by `make bench`._", ""]
    machine = results.get("machine")
    summary = _summary(results)
    sections = [*([summary] if summary else []), machine_section(machine),
                engine_section(results.get("engine"), machine),
                end_to_end_section(results.get("end_to_end")), scaling_section(results.get("scaling")),
                breakdown_section(results.get("breakdown")),
                baseline_section(results.get("baseline")), quantize_section(results.get("quantize")),
                cpus_section(results.get("cpus")), collection_section(results.get("collection")),
                memory_section(results.get("memory")),
                dense_section(results.get("dense")), merge_section(results.get("merge")),
                storage_section(results.get("storage")), connect_section(results.get("connect")),
                geotiff_section(results.get("geotiff")), viewer_section(results.get("viewer")),
                dense_scoring_section(results.get("dense_scoring"))]
    errors = results.get("errors")
    sections.append(METHOD)
    if errors:
        sections.append("## Sections that failed\n\n" + "\n".join(
            f"- {k}: `{v.splitlines()[0] if v else v}` (the whole message is in results.json)"
            for k, v in errors.items()))
    return "\n".join(lines) + "\n" + "\n\n".join(sections) + "\n"


def write(results: dict, md_path: str, json_path: str | None = None) -> None:
    """Write BENCHMARKS.md (and the raw figures) from ``results``."""
    from benchmarks.common import write_json

    if json_path:
        write_json(json_path, results)
    os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
    with open(md_path, "w") as fh:
        fh.write(render(results))


def main(argv=None) -> int:
    from benchmarks.common import parser_for

    p = parser_for(__doc__)
    p.add_argument("--json", help="results file (default: none, which writes the empty template)")
    p.add_argument("--md", default=project_path("BENCHMARKS.md"), help="output (default %(default)s)")
    args = p.parse_args(argv)
    results = None
    if args.json:
        with open(args.json) as fh:
            results = json.load(fh)
    write(results or {}, args.md)
    print(f"wrote {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
