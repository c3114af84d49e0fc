"""The fork-per-run floor: what judging costs when each run is a forked CPython and nothing else.

A bare parent, started as the zygote is (``python -I -S``, the child's code loaded by path with
the zygote's own `prepare`, the same preloaded modules, warm-up and ``gc.freeze``), forks one
child per program, `workers` at a time. Each child runs ``runner.run_asserts`` (compile the
program, run it, run the instrumented tests, report JSON lines into a memfd) and exits. There is no
confinement (no uid, rlimits, namespaces, fd shuffling), no protocol, no client, no output
capture: it is the ceiling for any design that gives each run its own forked process of this
Python on this machine. sandbox_bench.py runs it in the same rounds as the real sandbox.

    python -I -S bench/fork_floor.py ZYGOTE_PY < request.json
    request: {"workers": 3, "rounds": 3, "jobs": [[program, entry_point, preamble, steps], ...]}
    prints:  {"rounds": [{"wall_s", "parent_cpu_s", "children_cpu_s", "faults_per_run"}, ...]}
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import resource
import sys
import time
from typing import Any


def _load_zygote(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("_floor_zygote", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _round(runner: Any, jobs: list[tuple[str, Any]], workers: int) -> dict[str, float]:
    live, i = 0, 0
    t0, c0 = time.perf_counter(), os.times()
    f0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    while i < len(jobs) or live:
        while live < workers and i < len(jobs):
            program, suite = jobs[i]
            pid = os.fork()
            if pid == 0:
                try:
                    fd = os.memfd_create("results")
                    runner.run_asserts(runner.Reporter(fd, "0" * 24), program, suite)
                finally:
                    os._exit(0)
            live, i = live + 1, i + 1
        os.wait4(-1, 0)
        live -= 1
    c1 = os.times()
    return {
        "wall_s": time.perf_counter() - t0,
        "parent_cpu_s": (c1.user + c1.system) - (c0.user + c0.system),
        "children_cpu_s": (c1.children_user + c1.children_system)
        - (c0.children_user + c0.children_system),
        "faults_per_run": (resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - f0)
        / max(1, len(jobs)),
    }


def main() -> None:
    request = json.load(sys.stdin)
    mods = _load_zygote(sys.argv[1]).prepare()
    runner = mods["runner"]
    jobs = [
        (program, mods["suites"].compile_suite(entry, preamble, steps))
        for program, entry, preamble, steps in request["jobs"]
    ]
    runner.warm_up()
    out = os.dup(1)  # the answer's channel; what programs print goes nowhere, as no one reads it
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    gc.collect()
    gc.freeze()
    rounds = [_round(runner, jobs, int(request["workers"])) for _ in range(int(request["rounds"]))]
    os.write(out, (json.dumps({"rounds": rounds}) + "\n").encode())


if __name__ == "__main__":
    main()
