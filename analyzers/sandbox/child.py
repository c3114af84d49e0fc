"""The forked child: confine itself, run the program and its tests, clean up, exit.

Loaded by path into the zygote with the rest of the judging code (see zygote.load_modules); each
forked child calls :func:`child_main`. Confinement runs first, as root when the sandbox is
privileged: process group, fds 0-3 (stdin, stdout, stderr, results), rlimits, the slot's uid, the
run's directory. Standard library only: the zygote runs under ``python -I -S``.

Results go to fd 3 as JSON lines tagged with a per-run nonce; stdout and stderr are fds 1 and 2.
All three are memfds the zygote reads once the child is gone, so printed text can never be taken
for a result.
"""

from __future__ import annotations

import fcntl
import io
import os
import resource
import shutil
import signal
import sys
from typing import Any

from collabcoder.analyzers.sandbox.runner import (
    Reporter,
    describe_error,
    flush_streams,
    run_asserts,
    run_io,
)

RESULTS_FD = 3
_write = os.write
_BaseException = BaseException


def _deny_inet(event: str, args: tuple[Any, ...]) -> None:
    # Fallback when no network namespace could be made; ctypes can still get around it.
    if event == "socket.__new__" and len(args) > 1 and args[1] != 1:  # 1 is AF_UNIX
        raise PermissionError("network access is disabled in the sandbox")


_MAX_FD = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
_ENV_DATA: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)  # CPython's os._Environ


def _set_env(name: bytes, value: bytes) -> None:
    os.putenv(name, value)
    if _ENV_DATA is not None:  # what os.environ[name] = value does, minus its encode calls
        _ENV_DATA[name] = value
    else:  # pragma: no cover - other Pythons
        os.environ[name.decode()] = value.decode()


def _confine(u: dict[str, Any]) -> None:
    # Every call here runs in each child before the program: each object it touches costs a
    # copy-on-write page, so the zygote prepares what it can (fds >= 4, bytes, limit tuples).
    if u["reset_signals"]:  # only when the zygote runs a SIGCHLD handler (no pidfd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setpgid(0, 0)
    stdin = u["stdin"]
    fd_in = 0  # the zygote's fd 0 is /dev/null already
    if stdin is not None:
        fd_in = os.memfd_create("stdin", 0)
        data = stdin.encode("utf-8", "surrogateescape")
        while data:
            data = data[os.write(fd_in, data) :]
        os.lseek(fd_in, 0, os.SEEK_SET)
    srcs = [fd_in, u["out_w"], u["err_w"], u["res_w"]]
    if min(srcs[1:]) <= RESULTS_FD or 0 < fd_in <= RESULTS_FD:
        # Move the sources above the targets first so no dup2 clobbers a source still needed.
        srcs = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in srcs]
    for target, src in enumerate(srcs):
        if src != target:
            os.dup2(src, target, inheritable=target != RESULTS_FD)
    os.closerange(RESULTS_FD + 1, _MAX_FD)
    for raw, cap in zip(_CAPPED, (u["out_cap"], u["err_cap"]), strict=False):
        raw.cap, raw.written = cap, 0
    os.chdir(u["workdir"])
    for which, limit in u["rlimits"]:
        resource.setrlimit(which, limit)
    uid = u["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
            raise RuntimeError("privilege drop failed")
    # The zygote's environment is already minimal (set by the client); only these differ per run.
    home = u["workdir_b"]
    _set_env(b"HOME", home)
    _set_env(b"TMPDIR", home)
    if u["audit_net"]:
        sys.addaudithook(_deny_inet)
    # sys.std* are the zygote's own objects on fds 0-2, never used there, so their buffers are
    # empty: after the dup2s above they read and write this run's stdin/stdout/stderr.


def rlimits(limits: dict[str, Any], nproc: int | None) -> list[tuple[int, tuple[int, int]]]:
    """The run's resource limits as `setrlimit` arguments (built in the zygote, once per job)."""
    out = [
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1)),
        (resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"])),
        (resource.RLIMIT_FSIZE, (limits["fsize_bytes"], limits["fsize_bytes"])),
    ]
    if nproc is not None:
        out.append((resource.RLIMIT_NPROC, (nproc, nproc)))
    return out


class CappedOutput(io.RawIOBase):
    """A run's stdout or stderr: the first `cap` bytes (and one more, the zygote's truncation
    mark) go to the run's memfd, the rest is counted and dropped, so a program may print any
    amount without failing or blocking. The zygote's own copy is uncapped."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd, self.cap, self.written = fd, 1 << 62, 0

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        n = len(data)
        room = self.cap + 1 - self.written
        self.written += n
        if room > 0:
            view = memoryview(data)[:room]
            try:
                while view:
                    view = view[_write(self.fd, view) :]
            except OSError:  # EFBIG under a small file-size limit: keep what fit
                pass
        return n


_CAPPED: list[CappedOutput] = []  # [stdout, stderr] once the zygote has made them


def capped_stream(fd: int, line_buffering: bool) -> io.TextIOWrapper:
    """sys.stdout / sys.stderr for the zygote to install before forking (see CappedOutput)."""
    raw = CappedOutput(fd)
    _CAPPED.append(raw)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace",
                            line_buffering=line_buffering)  # fmt: skip


def _sweep_own_uid() -> None:
    """Kill every other process of this run's uid (its children, daemonized or not).

    RLIMIT_NPROC 0 first, so no thread of ours can fork behind the kill; kill(-1) as the slot uid
    reaches exactly the slot's processes (the kernel also catches forks in flight).
    """
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    os.kill(-1, signal.SIGKILL)


def _empty_workdir(workdir: str) -> bool:
    """Remove what the run left in its working directory, which the slot's next run reuses."""
    try:
        with os.scandir(workdir) as it:
            entries = list(it)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
        return True
    except OSError:
        return False  # e.g. the program chmod-ed things away: the zygote cleans up as root


def child_main(u: dict[str, Any]) -> None:
    """Entry point in the forked child. Never returns."""
    try:
        _confine(u)
    except _BaseException as e:
        try:  # the program has not run yet: this is the sandbox's failure, never the program's
            Reporter(u["res_w"], u["nonce"]).send({"t": "infra", "message": describe_error(e)})
        finally:
            os._exit(70)
    # From here on the program runs in this process: a failure of ours is one it caused, so it
    # surfaces as a run that ended without its "done" message (never as an infra error).
    status = 71
    try:
        rep = Reporter(RESULTS_FD, u["nonce"], u["results_budget"])
        rep.send({"t": "confined"})  # an "infra" report after this one is a forgery
        if u["kind"] == "asserts":
            run_asserts(rep, u["program"], u["suite"])
            status = 0
        else:
            status = run_io(rep, u["program"]) & 0xFF
        flush_streams()
        # Clean up after ourselves so the zygote need not fork a sweeper or remove the directory:
        # it trusts "clean" only from a child that then exits normally.
        if u.get("uid") is not None:
            _sweep_own_uid()
        if _empty_workdir(u["workdir"]):
            rep.send({"t": "clean"})
    finally:
        flush_streams()
        os._exit(status)
