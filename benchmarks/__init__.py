"""Throughput and memory figures for tilescan: scripts that print, not timed tests.

    python -m benchmarks.run_all            # everything; writes BENCHMARKS.md and benchmarks/results.json
    python -m benchmarks.run_all --quick    # a smoke run with tiny sizes (writes under work/bench/quick/)
    python -m benchmarks.engine --quick     # one section on its own; likewise end_to_end, breakdown,
                                            # baseline, quantize, memory, machine

Each module has ``run(...) -> dict`` (raw figures, JSON-ready) and a ``main`` that prints
its section; :mod:`benchmarks.report` turns the figures into the tables of BENCHMARKS.md.
"""
