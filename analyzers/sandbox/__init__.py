"""Run untrusted Python (model-written code) against assert tests and stdin/stdout pairs.

Written by hand on purpose: no library gives a warm, forking sandbox with these guarantees
(per-run rlimits, a per-run uid, no network, a private working directory, a clean environment,
per-assert verdicts with expected/actual, millisecond start-up). The official HumanEval harness
is not a sandbox (it says so) and starts two processes per program; container- or
seccomp-based runners start a whole interpreter per run. Here one warm "zygote" process forks a
child per run instead; see docs/sandbox.md for the guarantees and what is not protected.

Modules: `limits` (SandboxLimits), `sandbox` (the thread-safe client), `zygote` (the warm parent,
run as `python -I -S`), `worker` (child side: confine, run, report), `io_compare` (stdout rule).
"""

from collabcoder.analyzers.sandbox.io_compare import outputs_match
from collabcoder.analyzers.sandbox.limits import SandboxLimits
from collabcoder.analyzers.sandbox.sandbox import (
    AssertJob,
    IOJob,
    Sandbox,
    default_sandbox,
    default_workers,
)

__all__ = [
    "AssertJob",
    "IOJob",
    "Sandbox",
    "SandboxLimits",
    "default_sandbox",
    "default_workers",
    "outputs_match",
]
