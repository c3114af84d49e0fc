"""The fork-per-run floor: what judging costs when each run is a forked CPython and nothing else.

A bare parent, started as the zygote is (``python -I -S``, worker.py loaded by path with the
zygote's own loader, the same preloaded modules, warm-up and ``gc.freeze``), forks one child per
program, `workers` at a time. Each child runs ``worker.run_asserts`` (compile the program, run
it, run the instrumented tests, report JSON lines into a memfd) and exits. There is no
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


def _round(worker: Any, jobs: list[tuple[str, Any]], workers: int) -> dict[str, float]:
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
                    worker.run_asserts(worker._Reporter(fd, "0" * 24), program, suite)
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
    zygote = _load_zygote(sys.argv[1])
    worker = zygote._load_worker(os.path.join(os.path.dirname(sys.argv[1]), "worker.py"))
    for name in zygote._PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    jobs = [
        (program, worker.compile_suite(entry, preamble, steps))
        for program, entry, preamble, steps in request["jobs"]
    ]
    worker.warm_up()
    out = os.dup(1)  # the answer's channel; what programs print goes nowhere, as no one reads it
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    gc.collect()
    gc.freeze()
    rounds = [_round(worker, jobs, int(request["workers"])) for _ in range(int(request["rounds"]))]
    os.write(out, (json.dumps({"rounds": rounds}) + "\n").encode())


if __name__ == "__main__":
    main()
