"""The client side: `Sandbox` sends jobs to one warm zygote process and resolves their futures.

Submitting threads only put encoded jobs in an outbox. One writer thread sends them to the zygote,
at most 2 x workers in flight (so the zygote's queue, and the memory every fork copies, stay
small); one reader thread per zygote resolves the futures. The reader never writes, so a zygote
blocked on writing answers is always drained. If the zygote dies, the jobs it had go back to the
outbox for a fresh one (each job is tried at most twice); a job that cannot run becomes an
INFRA_ERROR verdict, never an exception. Requests are encoded by jobs.py; answers become
Verdicts in verdicts.py.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collabcoder.analyzers.sandbox.jobs import AssertJob, IOJob, encode_job
from collabcoder.analyzers.sandbox.limits import SandboxLimits
from collabcoder.analyzers.sandbox.verdicts import Raw, to_verdict
from collabcoder.analyzers.testcases import AssertSuite, IOSuite
from collabcoder.analyzers.verdict import Verdict

ZYGOTE_SCRIPT = Path(__file__).resolve().parent / "zygote.py"
# Slot uids: 0x40000000 + (zygote pid << 8) + slot, far above any real account (see zygote).
_UID_BASE = 0x40000000
_START_TIMEOUT_S = 60.0
_RESTART_BACKOFF_S = 5.0
_MAX_ATTEMPTS = 2
_SUITE_CACHE_SIZE = 512  # compiled suites the zygote keeps (it asks again for evicted ones)

DEFAULT_LIMITS = SandboxLimits()


class _Zygote:
    """One zygote process; its stdout is read by exactly one thread."""

    def __init__(self, proc: subprocess.Popen[bytes], hello: dict[str, Any]) -> None:
        self.proc = proc
        self.pid: int = proc.pid
        self.isolation: dict[str, Any] = dict(hello.get("isolation", {}))
        self.known_suites: set[str] = set()  # sent in full once; by key afterwards

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def stop(self, wait_s: float = 5.0) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # EOF: the zygote kills its children, cleans up and exits
        except OSError:
            pass
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def abandon(self) -> None:
        """In a forked copy of our process: let go of the parent's zygote without touching it."""
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    os.close(f.fileno())  # not f.close(): its lock may be held by a lost thread
                except OSError:
                    pass
        _ABANDONED.append(self)  # never finalized, so no stale close of a reused fd number


@dataclass
class _Pending:
    id: int
    line: bytes  # the full request
    future: Future[Raw]
    short: bytes | None = None  # an assert job's request with its suite by key only
    suite_key: str | None = None
    attempts: int = 0
    zygote: _Zygote | None = None


_ABANDONED: list[_Zygote] = []
_INSTANCES: weakref.WeakSet[Sandbox] = weakref.WeakSet()


def _infra(message: str) -> Raw:
    return {"error": message}


def _resolve(fut: Future[Raw], raw: Raw) -> None:
    if not fut.done():
        fut.set_result(raw)


def default_workers() -> int:
    """Usable CPUs + 1: a slot's gap between two runs (reaping, reporting, forking the next) is
    then covered by another slot's run, so the CPUs stay busy (about 8% more throughput on 2)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus + 1


class Sandbox:
    """Runs untrusted programs against their tests, `workers` at a time. Thread-safe.

    Use as a context manager or call `close()`. Picklable: a spawned process that receives one
    gets its own zygote; a forked process gets a fresh one on first use.
    """

    def __init__(
        self,
        workers: int | None = None,
        limits: SandboxLimits = DEFAULT_LIMITS,
        python: str | None = None,
    ) -> None:
        """`python`: the interpreter that runs the programs (default: this one). It needs only
        its standard library; a program is judged with that Python's semantics."""
        # At most 256: each zygote has a block of 256 slot uids.
        self.workers = min(256, max(1, workers if workers is not None else default_workers()))
        self.limits = limits
        self.python = python or sys.executable
        self._init_state()
        _INSTANCES.add(self)
        with self._lock:
            self._ensure_started()  # warm now; failures are retried at the next job

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # zygote lifecycle, `_closed`, the writer thread
        self._plock = threading.Lock()  # the in-flight table
        self._ids = itertools.count(1)
        self._inflight: dict[int, _Pending] = {}
        self._outbox: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._window = threading.Semaphore(2 * self.workers)
        self._writer: threading.Thread | None = None
        self._zygote: _Zygote | None = None
        self._closed = False
        self._pid = os.getpid()
        self._start_error: str | None = None
        self._start_failed_at = 0.0

    def __reduce__(self) -> tuple[type[Sandbox], tuple[int, SandboxLimits, str]]:
        return (Sandbox, (self.workers, self.limits, self.python))

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def isolation(self) -> dict[str, Any]:
        """What the zygote could set up: root, netns, mountns, uid_drop, audit_net, uids."""
        z = self._zygote
        return dict(z.isolation) if z else {}

    @property
    def zygote_pid(self) -> int | None:
        z = self._zygote
        return z.pid if z else None

    def run_asserts(
        self, program: str, suite: AssertSuite, limits: SandboxLimits | None = None
    ) -> Verdict:
        return self.run_many([AssertJob(program, suite, limits)])[0]

    def run_io(self, program: str, suite: IOSuite, limits: SandboxLimits | None = None) -> Verdict:
        return self.run_many([IOJob(program, suite, limits)])[0]

    def run_many(self, jobs: Sequence[AssertJob | IOJob]) -> list[Verdict]:
        """All jobs concurrently (the zygote runs `workers` at a time); results in input order."""
        futures = [self._submit_job(job) for job in jobs]
        return [
            to_verdict(job, job.limits or self.limits, fut.result())
            for job, fut in zip(jobs, futures, strict=True)
        ]

    async def arun_asserts(
        self, program: str, suite: AssertSuite, limits: SandboxLimits | None = None
    ) -> Verdict:
        return (await self.arun_many([AssertJob(program, suite, limits)]))[0]

    async def arun_io(
        self, program: str, suite: IOSuite, limits: SandboxLimits | None = None
    ) -> Verdict:
        return (await self.arun_many([IOJob(program, suite, limits)]))[0]

    async def arun_many(self, jobs: Sequence[AssertJob | IOJob]) -> list[Verdict]:
        """asyncio-friendly `run_many`: awaits the zygote's answers without blocking the loop."""
        futures = [asyncio.wrap_future(self._submit_job(job)) for job in jobs]
        raws = await asyncio.gather(*futures)
        return [
            to_verdict(job, job.limits or self.limits, raw)
            for job, raw in zip(jobs, raws, strict=True)
        ]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            z, self._zygote = self._zygote, None
        self._outbox.put(None)  # stops the writer
        with self._plock:
            pending, self._inflight = list(self._inflight.values()), {}
        while True:
            try:
                p = self._outbox.get_nowait()
            except queue.Empty:
                break
            if p is not None:
                pending.append(p)
        for p in pending:
            _resolve(p.future, _infra("the sandbox was closed"))
        if z is not None:
            z.stop()

    # -- submission ----------------------------------------------------------------------------
    def _submit_job(self, job: AssertJob | IOJob) -> Future[Raw]:
        limits = job.limits or self.limits
        jid = next(self._ids)
        fut: Future[Raw] = Future()
        fut.set_running_or_notify_cancel()  # cannot be cancelled under us (asyncio wrappers)
        try:
            line, short, key = encode_job(jid, job, limits)
        except (TypeError, ValueError) as e:
            fut.set_result(_infra(f"job cannot be encoded: {e!r}"))
            return fut
        with self._lock:
            if os.getpid() != self._pid:  # forked without our at-fork hook having run
                self._reset_after_fork()
            if self._closed:
                fut.set_result(_infra("the sandbox is closed"))
                return fut
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name="sandbox-writer", daemon=True
                )
                self._writer.start()
            self._outbox.put(_Pending(jid, line, fut, short, key))
        return fut

    def _write_loop(self) -> None:
        while True:
            p = self._outbox.get()
            if p is None:
                return
            self._window.acquire()  # released when its answer comes back (or it fails)
            with self._lock:
                z = None if self._closed else self._ensure_started()
                if z is not None:
                    p.zygote = z
                    with self._plock:
                        self._inflight[p.id] = p
            if z is None:
                self._window.release()
                why = "is closed" if self._closed else f"could not start: {self._start_error}"
                _resolve(p.future, _infra(f"the sandbox {why}"))
                continue
            line = p.line
            if p.suite_key is not None and p.short is not None:
                if p.suite_key in z.known_suites:
                    line = p.short
                else:
                    z.known_suites.add(p.suite_key)
            try:
                z.write(line)
            except (OSError, ValueError):
                pass  # the zygote died: its reader gives the job back to the outbox

    # -- zygote lifecycle (callers hold _lock) -------------------------------------------------
    def _ensure_started(self) -> _Zygote | None:
        if self._zygote is not None:
            return self._zygote
        if self._start_error and time.monotonic() - self._start_failed_at < _RESTART_BACKOFF_S:
            return None
        try:
            self._zygote = self._spawn_zygote()
            self._start_error = None
        except Exception as e:
            self._start_error = repr(e)
            self._start_failed_at = time.monotonic()
        return self._zygote

    def _spawn_zygote(self) -> _Zygote:
        biggest_file = self.limits.file_size_mb
        cfg = {
            "workers": self.workers,
            "uid_base": _UID_BASE,
            "tmpfs_mb": 256 + 2 * biggest_file * self.workers,
            "tmpfs_inodes": 20000 + 2000 * self.workers,
            "suite_cache": _SUITE_CACHE_SIZE,
        }
        # Never os.environ: the zygote and the programs it runs see no keys or tokens.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": "/tmp"}  # fmt: skip
        try:
            proc = subprocess.Popen(
                [self.python, "-I", "-S", "-B", str(ZYGOTE_SCRIPT), json.dumps(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd="/",
                start_new_session=True,  # ^C in a terminal must not kill it behind our back
            )
        except OSError as e:
            raise RuntimeError(f"cannot run the interpreter {self.python}: {e.strerror}") from e
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], _START_TIMEOUT_S)
        line = proc.stdout.readline() if ready else b""
        try:
            hello = json.loads(line)
            if not hello.get("ready"):
                raise ValueError(line)
        except ValueError:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the zygote did not start (got {line[:200]!r})") from None
        z = _Zygote(proc, hello)
        threading.Thread(
            target=self._read_loop, args=(z,), name="sandbox-reader", daemon=True
        ).start()
        return z

    def _read_loop(self, z: _Zygote) -> None:
        assert z.proc.stdout is not None
        try:
            for line in z.proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                with self._plock:
                    p = self._inflight.pop(msg.get("id"), None)
                if p is None:
                    continue
                self._window.release()
                if msg.get("need_suite") and p.suite_key is not None:
                    z.known_suites.discard(p.suite_key)  # evicted there: send it in full
                    p.short = None
                    self._outbox.put(p)
                else:
                    _resolve(p.future, msg)
        except (OSError, ValueError):
            pass
        self._on_zygote_exit(z)

    def _on_zygote_exit(self, z: _Zygote) -> None:
        try:
            z.proc.wait(5)
        except subprocess.TimeoutExpired:
            z.proc.kill()
            z.proc.wait()
        if z.proc.stdout is not None:
            z.proc.stdout.close()
        with self._lock:
            if self._zygote is z:
                self._zygote = None  # the writer starts a fresh one for the next job
            closed = self._closed
        with self._plock:
            lost = [p for p in self._inflight.values() if p.zygote is z]
            for p in lost:
                del self._inflight[p.id]
        for p in lost:
            self._window.release()
            p.attempts += 1
            if closed:
                _resolve(p.future, _infra("the sandbox was closed"))
            elif p.attempts >= _MAX_ATTEMPTS:
                code = z.proc.returncode
                _resolve(
                    p.future, _infra(f"the sandbox zygote died twice (status {code}) with this job")
                )
            else:
                self._outbox.put(p)

    def _reset_after_fork(self) -> None:
        z = self._zygote
        self._init_state()
        if z is not None:
            z.abandon()


def _after_fork_in_child() -> None:
    global _DEFAULT_LOCK
    _DEFAULT_LOCK = threading.Lock()
    for sb in list(_INSTANCES):
        sb._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

_DEFAULT: Sandbox | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox, started on first use and closed at interpreter exit."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT.closed:
            _DEFAULT = Sandbox()
            atexit.register(_DEFAULT.close)
        return _DEFAULT
