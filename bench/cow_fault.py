"""What one copy-on-write page fault costs a forked CPython child on this machine.

The parent builds 200,000 small objects (about 12 MB), freezes them out of the collector and
forks; the child takes a reference to every 400th object, so each touch lands on a page of its
own and copies it (a reference count is a write). CPU time over minor faults is the cost per
copied page, the unit in which a sandboxed run pays for touching the zygote's memory.

    python bench/cow_fault.py        # prints {"us_per_fault": ..., "faults": ...}
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import time


def one_sample(objects: list[str]) -> tuple[float, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.thread_time()
        held = objects[::400]
        dt = time.thread_time() - t0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        os.write(write, json.dumps([dt, faults, len(held)]).encode())
        os._exit(0)
    os.close(write)
    data = os.read(read, 256)
    os.close(read)
    os.waitpid(pid, 0)
    dt, faults, _ = json.loads(data)
    return dt, faults


def main() -> None:
    objects = [str(i) * 3 for i in range(200_000)]
    gc.collect()
    gc.freeze()
    samples = [one_sample(objects) for _ in range(7)]
    per_fault = statistics.median(dt / max(1, n) for dt, n in samples)
    faults = statistics.median(n for _, n in samples)
    print(json.dumps({"us_per_fault": round(per_fault * 1e6, 2), "faults": faults}))


if __name__ == "__main__":
    main()
