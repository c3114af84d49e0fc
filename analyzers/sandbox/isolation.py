"""The zygote's one-time isolation, set up before it serves: namespaces, slot uids, a private /tmp.

When root, the zygote moves into fresh network and mount namespaces (children inherit them: no
network, a private size-limited ``/tmp``, read-only empty ``/var/tmp``, ``/dev/shm``,
``/run/lock``), becomes a subreaper and checks it can drop to its block of slot uids. Without
root, or in a container that refuses namespaces, it falls back to a private directory under
``/tmp`` and the audit-hook network block (see docs/sandbox.md, "Limits of the guarantees").
Loaded by path by zygote.py, which runs under ``python -I -S``: standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 1, 2, 4, 32, 4096
MS_REC, MS_PRIVATE = 1 << 14, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36


def isolate(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """What could be set up (the `isolation` the client reports) and the slots' base directory."""
    try:
        iso, base = _setup_isolation(cfg)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        iso, base = {"root": False, "netns": False, "mountns": False, "uid_drop": False,
                     "audit_net": True, "uids": None}, _private_tmpdir()  # fmt: skip
    # Inherited by every child: setuid binaries cannot hand privileges back to a program.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return iso, base


def _setup_isolation(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    iso: dict[str, Any] = {"root": os.geteuid() == 0, "netns": False, "mountns": False,
                           "uid_drop": False, "audit_net": False, "uids": None}  # fmt: skip
    libc = ctypes.CDLL(None, use_errno=True)
    if iso["root"]:
        iso["netns"] = libc.unshare(CLONE_NEWNET) == 0
        if libc.unshare(CLONE_NEWNS) == 0 and libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0:  # fmt: skip
            opts = f"size={cfg['tmpfs_mb']}m,nr_inodes={cfg['tmpfs_inodes']},mode=0711"
            flags = MS_NOSUID | MS_NODEV
            iso["mountns"] = libc.mount(b"tmpfs", b"/tmp", b"tmpfs", flags, opts.encode()) == 0
            if iso["mountns"]:
                # The other world-writable places: empty and read-only inside the sandbox.
                for d in ("/var/tmp", "/dev/shm", "/run/lock"):
                    if os.path.isdir(d) and not os.path.islink(d):
                        libc.mount(b"tmpfs", d.encode(), b"tmpfs", flags | MS_RDONLY, b"size=4k")
                iso["rebound_paths"] = _rebind_private_paths(libc)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come back to us to be reaped
        uids = _slot_uids(cfg["uid_base"], cfg["workers"])
        iso["uid_drop"] = uids is not None and _can_drop_to(uids[0])
        iso["uids"] = uids if iso["uid_drop"] else None
    iso["audit_net"] = not iso["netns"]
    if iso["mountns"]:
        base = "/tmp"
    else:
        base = _private_tmpdir()
        os.chmod(base, 0o711)  # slot uids may enter their own directory, never list others
    os.chdir("/")
    return iso, base


def _private_tmpdir() -> str:
    """A fresh 0700 directory under /tmp, as tempfile.mkdtemp makes (tempfile would import
    `random`, whose at-fork reseed then runs in every child; programs that want it import it)."""
    while True:
        path = f"/tmp/collab-sandbox-{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _world_searchable(path: str) -> bool:
    """Whether any uid may list `path` and reach it (x on every ancestor)."""
    path = os.path.abspath(path)
    try:
        if os.stat(path).st_mode & 0o005 != 0o005:
            return False
        while path != "/":
            path = os.path.dirname(path)
            if not os.stat(path).st_mode & 0o001:
                return False
    except OSError:
        return False
    return True


def _rebind_private_paths(libc: Any) -> int:
    """Make the stdlib importable for slot uids when Python lives in a private place (/root).

    Each such sys.path directory is bind-mounted read-only under our private /tmp, inside our
    mount namespace only, and sys.path points there; modules preloaded before keep working.
    """
    rebound = 0
    for i, entry in enumerate(list(sys.path)):
        if not os.path.isdir(entry) or _world_searchable(entry):
            continue
        target = f"/tmp/.path{i}"
        os.mkdir(target, 0o755)
        if libc.mount(entry.encode(), target.encode(), None, MS_BIND | MS_REC, None) == 0:
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
            libc.mount(None, target.encode(), None, flags, None)
            sys.path[i] = target
            # Packages imported already (encodings, json, ...) find submodules via __path__.
            for mod in list(sys.modules.values()):
                paths = getattr(mod, "__path__", None)
                if isinstance(paths, list):
                    paths[:] = [
                        target + p[len(entry) :] if p.startswith(entry) else p for p in paths
                    ]
            rebound += 1
    return rebound


def _slot_uids(base: int, n: int) -> list[int] | None:
    """This zygote's slot uids: a block derived from our pid, so no two live zygotes share one.

    That matters: a run's cleanup kills every process of its uid, and RLIMIT_NPROC counts per
    uid. pid_max is at most 2**22, so base + (pid << 8) + slot stays a valid uid for <= 256 slots.
    None if an account owns any of them (never expected that high).
    """
    if n > 256:
        return None
    uids = [base + (os.getpid() << 8) + slot for slot in range(n)]
    for uid in uids:
        try:
            pwd.getpwuid(uid)
            return None
        except KeyError:
            pass
    return uids


def _can_drop_to(uid: int) -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
