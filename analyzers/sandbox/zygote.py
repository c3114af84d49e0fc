"""The sandbox's warm parent: started once, forks one confined child per run.

Started by client.py as ``python -I -S -B zygote.py CONFIG_JSON`` with a minimal environment and
cwd ``/``, so no user site-packages, ``PYTHON*`` variables or secrets reach it or its children.
It loads the child's code and its own set-up (`MODULES`) by path, never by import from
site-packages, pre-imports common stdlib modules so children start warm, and sets up its
isolation once (isolation.py: when root, fresh network and mount namespaces that children
inherit). This file is the fork/epoll loop that serves jobs.

Protocol, newline-delimited JSON (the zygote never runs untrusted code itself, and nothing is
ever unpickled):
  in  (fd 0): {"id", "kind": "asserts", "program", "suite_key", "suite": [entry, preamble, steps],
               "limits"} ("suite" left out once this zygote has compiled that key)
              {"id", "kind": "io", "program", "cases": [{"stdin", "cap"}], "limits"}
  out (fd 1): {"ready": true, "pid", "isolation"} once, then per job {"id", "runs": [...]},
              {"id", "error": "..."} or {"id", "need_suite": true} (evicted: send it again).
              One run per child: its raw result lines and their nonce (the client keeps the
              lines carrying it), exit status, rusage, whether we killed it for time, and
              capped stdout/stderr.
At most `workers` jobs run at once, each in its own uid slot; the rest wait in a queue. EOF on
fd 0 means the client is gone: kill everything, clean up, exit.
"""

from __future__ import annotations

import collections
import json
import os
import select
import shutil
import signal
import sys
import time
from typing import Any

RESULTS_CAP = 16 * 1024 * 1024
SWEEP_TIMEOUT_S = 2.0
# Our modules, loaded by path in this order (each imports only earlier ones; see load_modules).
MODULES = ("isolation", "trust", "suites", "runner", "child")
_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE = "collabcoder.analyzers.sandbox"
# Warm for programs that import them. Not `random` (nor `statistics`, `tempfile`, which import it):
# its at-fork hook would reseed in every child, a cost each run pays; a program importing it
# gets a fresh seed anyway.
_PRELOAD = (
    "abc array ast bisect calendar cmath collections copy dataclasses datetime decimal enum "
    "fractions functools hashlib heapq itertools json math numbers operator re string textwrap "
    "typing unicodedata"
).split()


class _Quitter:
    """`exit()`/`quit()` as the site module would add them (we run with -S)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Use {self.name}() to exit"

    def __call__(self, code: Any = None) -> None:
        raise SystemExit(code)


def load_modules(names: tuple[str, ...] = MODULES) -> dict[str, Any]:
    """Load our sibling modules by path, each under its package name, with one private copy of
    the builtins: the judging code keeps judging correctly whatever a program does to `builtins`.

    They are in sys.modules only while loading (their imports of each other and dataclass/typing
    lookups by module name find them there), then removed so programs do not find them by name.
    """
    import builtins
    import types

    builtins.exit = _Quitter("exit")  # type: ignore[assignment]
    builtins.quit = _Quitter("quit")  # type: ignore[assignment]
    private = dict(builtins.__dict__)
    mods: dict[str, Any] = {}
    try:
        for name in names:
            path = os.path.join(_HERE, name + ".py")
            mod = mods[name] = types.ModuleType(f"{_PACKAGE}.{name}")
            mod.__file__ = path
            mod.__dict__["__builtins__"] = private
            with open(path, encoding="utf-8") as f:
                source = f.read()
            sys.modules[mod.__name__] = mod
            exec(compile(source, path, "exec"), mod.__dict__)
    finally:
        for mod in mods.values():
            sys.modules.pop(mod.__name__, None)
    return mods


def prepare() -> dict[str, Any]:
    """Load our modules, then preload the stdlib ones (here and in bench/fork_floor.py alike)."""
    mods = load_modules()
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    return mods


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


class Unit:
    """One child process: a whole assert job, or one stdin/stdout case."""

    __slots__ = ("caps", "clean", "cpu_s", "data", "deadline", "fds", "job", "maxrss_kb", "nonce",
                 "pid", "started", "status", "sweep_deadline", "sweeps", "timed_out", "truncated",
                 "wall_s", "workdir")  # fmt: skip

    def __init__(self, job: Job, nonce: str, workdir: str, caps: dict[str, int]) -> None:
        self.job, self.nonce, self.workdir = job, nonce, workdir
        self.pid = 0
        # "res", "out", "err": memfds the child writes (results, stdout, stderr); read once it
        # is gone. Nothing to drain while it runs, so no wake-ups and no full pipe to block on.
        self.fds: dict[str, int] = {}
        self.caps = caps  # bytes kept of each
        self.data: dict[str, bytes] = {}
        self.truncated: dict[str, bool] = {}
        self.started = time.monotonic()
        self.deadline = 0.0
        self.timed_out = False
        self.status: int | None = None
        self.cpu_s = 0.0
        self.maxrss_kb = 0
        self.wall_s = 0.0
        self.sweeps = 0
        self.sweep_deadline = 0.0
        self.clean = False


class Job:
    __slots__ = ("case_i", "cases", "id", "kind", "limits", "program", "raw_suite", "rlimits",
                 "runs", "slot", "suite", "suite_key")  # fmt: skip

    def __init__(self, msg: dict[str, Any]) -> None:
        self.id = msg["id"]
        self.kind: str = msg["kind"]
        self.program: str = msg["program"]
        self.limits: dict[str, Any] = msg["limits"]
        self.suite: Any = None
        self.raw_suite: list[Any] = msg.get("suite") or []
        self.suite_key: str | None = msg.get("suite_key")
        self.cases: list[dict[str, Any]] = msg.get("cases") or []
        self.case_i = 0
        self.runs: list[dict[str, Any]] = []
        self.slot = -1
        self.rlimits: list[Any] | None = None


class Zygote:
    def __init__(
        self, cfg: dict[str, Any], mods: dict[str, Any], iso: dict[str, Any], base: str
    ) -> None:
        self.cfg, self.iso, self.base = cfg, iso, base
        self.compile_suite = mods["suites"].compile_suite
        self.child = mods["child"]
        self.ctl_in, self.ctl_out = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)  # nothing printed by accident can corrupt the protocol
        os.close(null)
        os.set_blocking(self.ctl_in, False)
        # epoll itself, not `selectors`: what runs between forks is what every fork makes us
        # copy again, so the loop keeps to the fewest objects per wake-up.
        self.ep = select.epoll()
        self.ep.register(self.ctl_in, select.EPOLLIN)
        # Exits wake us through a pidfd per child when the kernel has them: then no signal
        # handler exists for children to reset. Otherwise SIGCHLD and a wakeup pipe.
        self.use_pidfd = _pidfd_works()
        self.pidfds: dict[int, int] = {}  # pid -> pidfd
        if not self.use_pidfd:
            self.wake_r, wake_w = os.pipe()
            os.set_blocking(self.wake_r, False)
            os.set_blocking(wake_w, False)
            signal.signal(signal.SIGCHLD, lambda *_: None)
            signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
            self.ep.register(self.wake_r, select.EPOLLIN)
        self.ctl_buf = bytearray()
        self.eof = False
        self.queue: collections.deque[Job] = collections.deque()
        self.free_slots = list(range(cfg["workers"]))[::-1]
        self.units: dict[int, Unit] = {}  # live child pid -> unit
        self.sweepers: dict[int, Unit] = {}  # sweeper pid -> unit being cleaned up
        self.cache: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.slot_dirs: set[int] = set()  # slots whose working directory exists (and is empty)
        self.slot_paths = [
            (path, os.fsencode(path))
            for path in (os.path.join(base, f"w{slot}") for slot in range(cfg["workers"]))
        ]

    # -- main loop -------------------------------------------------------------------------
    def serve(self) -> None:
        self._send({"ready": True, "pid": os.getpid(), "isolation": self.iso})
        while not (self.eof and not self.units and not self.sweepers):
            while self.queue and self.free_slots and not self.eof:
                job = self.queue.popleft()
                job.slot = self.free_slots.pop()
                self._start(job)
            for fd, _ in self.ep.poll(self._timeout()):
                if fd == self.ctl_in:
                    self._read_ctl()
                elif not self.use_pidfd and fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                # else a pidfd: _reap below collects the child
            self._reap()
            self._enforce_deadlines()
        if self.base != "/tmp":  # a private tmpfs disappears with our mount namespace
            shutil.rmtree(self.base, ignore_errors=True)

    def _timeout(self) -> float | None:
        first = None
        for u in self.units.values():
            if not u.timed_out and (first is None or u.deadline < first):
                first = u.deadline
        for u in self.sweepers.values():
            if first is None or u.sweep_deadline < first:
                first = u.sweep_deadline
        return None if first is None else max(0.0, first - time.monotonic())

    def _send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(self.ctl_out, data) :]

    def _read_ctl(self) -> None:
        try:
            chunk = os.read(self.ctl_in, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            self._shutdown()
            return
        self.ctl_buf += chunk
        while (nl := self.ctl_buf.find(b"\n")) >= 0:
            line = bytes(self.ctl_buf[:nl])
            del self.ctl_buf[: nl + 1]
            try:
                self.queue.append(Job(json.loads(line)))
            except Exception as e:  # a client bug: answer if we can tell whom
                try:
                    self._send({"id": json.loads(line)["id"], "error": f"bad request: {e!r}"})
                except Exception:
                    pass

    def _shutdown(self) -> None:
        self.eof = True
        self.ep.unregister(self.ctl_in)
        self.queue.clear()
        for unit in self.units.values():
            self._kill(unit)
            unit.timed_out = True  # so it is swept, not trusted to have cleaned up

    # -- jobs and units --------------------------------------------------------------------
    def _start(self, job: Job) -> None:
        if job.kind == "asserts":
            key = job.suite_key or json.dumps(job.raw_suite)
            suite = self.cache.get(key)
            if suite is None and not job.raw_suite:  # sent by key, but we no longer have it
                self._send({"id": job.id, "need_suite": True})
                self._release(job)
                return
            if suite is None:
                try:
                    suite = self.compile_suite(*job.raw_suite)
                except Exception as e:
                    self._finish_job(job, error=f"the test suite does not compile: {e!r}")
                    return
                self.cache[key] = suite
                if len(self.cache) > self.cfg.get("suite_cache", 512):
                    self.cache.popitem(last=False)
            self.cache.move_to_end(key)
            job.suite = suite
        elif not job.cases:
            self._finish_job(job)
            return
        self._spawn(job)

    def _spawn(self, job: Job) -> None:
        uid = self.iso["uids"][job.slot] if self.iso["uids"] else None
        workdir, workdir_b = self.slot_paths[job.slot]
        limits = job.limits
        case = job.cases[job.case_i] if job.kind == "io" else None
        # Every memfd is a file under the run's RLIMIT_FSIZE: keep caps below it so the byte
        # past a cap (the truncation mark) and the last result lines can still be written.
        fsize = int(limits["fsize_bytes"])
        out_cap = limits["out_cap"]
        caps = {"res": RESULTS_CAP, "out": out_cap, "err": out_cap}
        if case is not None:
            caps["out"] = max(out_cap, int(case.get("cap", 0)))
        caps = {name: max(1, min(cap, fsize - 1)) for name, cap in caps.items()}
        unit = Unit(job, os.urandom(12).hex(), workdir, caps)
        try:
            for name in ("res", "out", "err"):
                unit.fds[name] = os.memfd_create(name, os.MFD_CLOEXEC)
            if job.slot not in self.slot_dirs:
                shutil.rmtree(workdir, ignore_errors=True)
                os.mkdir(workdir, 0o700)
                if uid is not None:
                    os.chown(workdir, uid, uid)
                self.slot_dirs.add(job.slot)
            if job.rlimits is None:
                job.rlimits = self.child.rlimits(
                    limits, limits["nproc"] if uid is not None else None
                )
            cfg = {"kind": job.kind, "nonce": unit.nonce, "program": job.program,
                   "suite": job.suite, "stdin": case["stdin"] if case is not None else None,
                   "workdir": workdir, "workdir_b": workdir_b, "uid": uid,
                   "rlimits": job.rlimits, "audit_net": self.iso["audit_net"],
                   "reset_signals": not self.use_pidfd, "res_w": unit.fds["res"],
                   "out_w": unit.fds["out"], "err_w": unit.fds["err"],
                   "out_cap": caps["out"], "err_cap": caps["err"],
                   "results_budget": caps["res"] // 2}  # fmt: skip
            pid = os.fork()
        except OSError as e:
            self._close_fds(unit)
            self.slot_dirs.discard(job.slot)
            self._finish_job(job, error=f"could not start the run: {e!r}")
            return
        if pid == 0:
            try:
                # Nothing of ours is freed or cleared here: every object touched costs the child
                # a copied page, and dropping references would not scrub the memory anyway (all
                # jobs of one sandbox come from the same client).
                self.child.child_main(cfg)
            finally:
                os._exit(70)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        unit.pid = pid
        unit.deadline = time.monotonic() + float(limits["timeout_s"])
        self.units[pid] = unit
        self._watch(pid)

    def _watch(self, pid: int) -> None:
        if self.use_pidfd:
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # already reaped by an earlier _reap: nothing to wait for
                return
            self.pidfds[pid] = fd
            self.ep.register(fd, select.EPOLLIN)

    def _unwatch(self, pid: int) -> None:
        fd = self.pidfds.pop(pid, None)
        if fd is not None:
            self.ep.unregister(fd)
            os.close(fd)

    @staticmethod
    def _collect(unit: Unit) -> None:
        """Read the run's memfds (the first `cap` bytes of each) and close them; once."""
        for name, fd in unit.fds.items():
            cap, data, size = unit.caps[name], b"", 0
            try:
                size = os.lseek(fd, 0, os.SEEK_END)  # the child is gone: its offset is free
                if size:
                    data = os.pread(fd, min(size, cap), 0)
            except OSError:
                pass
            unit.data[name] = data
            unit.truncated[name] = size > cap  # the child's stdout/stderr write one byte past it
        Zygote._close_fds(unit)

    @staticmethod
    def _close_fds(unit: Unit) -> None:
        for fd in unit.fds.values():
            os.close(fd)
        unit.fds.clear()

    def _reap(self) -> None:
        while True:
            try:
                pid, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._unwatch(pid)
            if pid in self.units:
                unit = self.units.pop(pid)
                unit.status = status
                unit.wall_s = time.monotonic() - unit.started
                unit.cpu_s = ru.ru_utime + ru.ru_stime
                unit.maxrss_kb = ru.ru_maxrss
                if self.iso["uids"] and self._clean(unit):
                    unit.clean = True  # its uid holds no process and its directory is empty
                    self._complete(unit)
                elif self.iso["uids"]:
                    self._kill(unit)
                    self._sweep(unit)
                else:
                    self._kill(unit)  # unprivileged: the process group is all we can reach
                    self._complete(unit)
            elif pid in self.sweepers:
                unit = self.sweepers.pop(pid)
                if os.waitstatus_to_exitcode(status) != 0 and unit.sweeps < 20:
                    self._sweep(unit)  # killed by the program it was sweeping: try again
                else:
                    self._complete(unit)
            # else: an orphan grandchild handed to us as subreaper; reaping it is all we owe it

    def _clean(self, unit: Unit) -> bool:
        """The child swept its uid and emptied its directory, then exited normally (child.py)."""
        if unit.timed_out or unit.status is None or not os.WIFEXITED(unit.status):
            return False
        self._collect(unit)
        return self._said(unit, "clean", tail=True)

    @staticmethod
    def _said(unit: Unit, kind: str, tail: bool = False) -> bool:
        """Whether the child reported `kind` (with our nonce: printed text cannot fake it)."""
        res = unit.data.get("res", b"")
        buf = res[-200:] if tail else res
        head, end = f'{{"t":"{kind}"'.encode(), f'"n":"{unit.nonce}"}}'.encode()
        return any(ln.startswith(head) and ln.endswith(end) for ln in buf.split(b"\n"))

    def _kill(self, unit: Unit) -> None:
        for target in (-unit.pid, unit.pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass

    def _sweep(self, unit: Unit) -> None:
        """Kill every process of the slot's uid, including ones that left the process group."""
        uid = self.iso["uids"][unit.job.slot]
        unit.sweeps += 1
        unit.sweep_deadline = time.monotonic() + SWEEP_TIMEOUT_S
        try:
            pid = os.fork()
        except OSError:
            self._complete(unit)
            return
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                # kill(-1) signals every process we may signal but ourselves: with our uid that
                # is exactly the slot's processes. The kernel also catches forks in flight.
                for _ in range(3):
                    os.kill(-1, signal.SIGKILL)
                os._exit(0)
            except BaseException:
                os._exit(1)
        self.sweepers[pid] = unit
        self._watch(pid)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for unit in self.units.values():
            if not unit.timed_out and now >= unit.deadline:
                unit.timed_out = True
                self._kill(unit)
        for pid, unit in self.sweepers.items():
            if now >= unit.sweep_deadline:  # stopped by the program (SIGSTOP): retry on reap
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def _complete(self, unit: Unit) -> None:
        self._collect(unit)  # the child and its uid are gone: what is there is all there will be
        job = unit.job
        if not unit.clean:
            self.slot_dirs.discard(job.slot)  # recreated empty for the slot's next run
        status = unit.status if unit.status is not None else 0
        # Result lines go to the client as they came; it keeps those carrying this nonce.
        run = {
            "res": unit.data["res"].decode("ascii", "replace"), "nonce": unit.nonce,
            "timed_out": unit.timed_out,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "sig": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "cpu_s": unit.cpu_s, "maxrss_kb": unit.maxrss_kb, "wall_s": unit.wall_s,
            "stdout": unit.data["out"].decode("utf-8", "replace"),
            "stderr": unit.data["err"].decode("utf-8", "replace"),
            "out_trunc": unit.truncated["out"], "err_trunc": unit.truncated["err"],
            "res_trunc": unit.truncated["res"],
        }  # fmt: skip
        job.runs.append(run)
        if self.eof:
            self._finish_job(job)
            return
        more = job.kind == "io" and job.case_i + 1 < len(job.cases)
        # Later cases would only repeat the same failure, at the cost of a full timeout each.
        stop = unit.timed_out or run["sig"] == signal.SIGXCPU
        if more and not (stop or self._said(unit, "syntax") or self._said(unit, "infra")):
            job.case_i += 1
            self._spawn(job)
        else:
            self._finish_job(job)

    def _finish_job(self, job: Job, error: str | None = None) -> None:
        if not self.eof:
            self._send(
                {"id": job.id, "error": error} if error else {"id": job.id, "runs": job.runs}
            )
        self._release(job)

    def _release(self, job: Job) -> None:
        if job.slot >= 0:
            self.free_slots.append(job.slot)
            job.slot = -1


def main() -> None:
    cfg = json.loads(sys.argv[1])
    mods = prepare()
    child = mods["child"]
    iso, base = mods["isolation"].isolate(cfg)
    # Children reuse these objects on their own fds 0-2 (see child._confine).
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    # The children's stdout/stderr: written to the run's memfds up to its caps (child.py).
    sys.stdout = sys.__stdout__ = child.capped_stream(1, line_buffering=False)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = child.capped_stream(2, line_buffering=True)  # type: ignore[misc]
    sys.argv = ["main.py"]  # what programs see; set here once rather than in every child
    import gc

    mods["runner"].warm_up()
    gc.collect()
    gc.freeze()  # objects from start-up stay out of the collector: fewer copy-on-write faults
    Zygote(cfg, mods, iso, base).serve()


if __name__ == "__main__":
    main()
