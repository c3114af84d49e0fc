"""Run untrusted Python (model-written code) against assert tests and stdin/stdout pairs.

Written by hand on purpose: no library gives a warm, forking sandbox with these guarantees
(per-run rlimits, a per-run uid, no network, a private working directory, a clean environment,
per-assert verdicts with expected/actual, millisecond start-up). The official HumanEval harness
is not a sandbox (it says so) and starts two processes per program; container- or
seccomp-based runners start a whole interpreter per run. Here one warm "zygote" process forks a
child per run instead; see docs/sandbox.md for the guarantees and what is not protected.

Modules. Client side: `client` (Sandbox, the thread-safe client), `jobs` (AssertJob, IOJob and
their wire form), `verdicts` (reports -> Verdicts), `limits` (SandboxLimits), `io_compare` (the
stdout rule). Zygote side, stdlib only and loaded by path (`python -I -S`): `zygote` (the warm
parent's fork/epoll loop), `isolation` (its namespaces and slot uids), and the child's code:
`child` (confine, run, clean up), `runner` (the program and its tests, result lines), `suites`
(compiled, instrumented test suites), `trust` (which values may be compared).
"""

from collabcoder.analyzers.sandbox.client import Sandbox, default_sandbox, default_workers
from collabcoder.analyzers.sandbox.io_compare import outputs_match
from collabcoder.analyzers.sandbox.jobs import AssertJob, IOJob
from collabcoder.analyzers.sandbox.limits import SandboxLimits

__all__ = [
    "AssertJob",
    "IOJob",
    "Sandbox",
    "SandboxLimits",
    "default_sandbox",
    "default_workers",
    "outputs_match",
]
