"""Child side of the sandbox: confine the forked process, run the program and its tests, report.

The zygote (zygote.py) loads this file by path into a namespace whose ``__builtins__`` is a
private copy taken at start-up, and each forked child calls :func:`child_main`. What judges the
program (exception classes, ``type``, ``repr``, the operator functions, the JSON encoder, the
trust tables) is bound before any program runs, so a program that patches ``builtins`` or stdlib
modules cannot change how its tests are judged. Standard library only: the zygote runs under
``python -I -S``.

Results go to fd 3 as JSON lines tagged with a per-run nonce; stdout and stderr are fds 1 and 2.
All three are memfds the zygote reads once the child is gone, so printed text can never be taken
for a result.
"""

from __future__ import annotations

import ast
import builtins
import collections
import decimal
import fcntl
import fractions
import io
import linecache
import operator
import os
import resource
import shutil
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

try:  # the C encoder does not look anything up in builtins, so a program cannot patch it
    from _json import encode_basestring_ascii as _esc
except ImportError:  # pragma: no cover - CPython always has _json
    from json.encoder import py_encode_basestring_ascii as _esc

PROGRAM_FILE = "<program>"
TEST_FILE = "<test>"
RESULTS_FD = 3
_MAX_TEXT = 2000  # longest message / repr we report

# Snapshot before any program runs: the namespace the tests (and this module) resolve names in.
PRISTINE_BUILTINS: dict[str, Any] = dict(builtins.__dict__)

_write = os.write
_perf = time.perf_counter
_AssertionError = AssertionError
_MemoryError = MemoryError
_SystemExit = SystemExit
_BaseException = BaseException
_type_mro = type.__dict__["__mro__"].__get__  # immune to metaclass __getattribute__ tricks
_type_name = type.__dict__["__name__"].__get__
_type_dict = type.__dict__["__dict__"].__get__

# ---------------------------------------------------------------------------------------------
# Trust: which values may be compared with a plain expected value.
# ---------------------------------------------------------------------------------------------
_ATOMIC = frozenset({type(None), bool, int, float, complex, str, bytes})
_PLAIN_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})
_CMP_DUNDERS = (
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__",
    "__contains__",
)  # fmt: skip
# Classes whose comparison methods we trust as they are now (before the program runs).
_TRUSTED_BASES: tuple[type, ...] = (
    object, type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, set,
    frozenset, dict, range, collections.OrderedDict, collections.defaultdict,
    collections.Counter, collections.deque, fractions.Fraction, decimal.Decimal,
)  # fmt: skip
_TRUSTED_IMPLS: dict[str, frozenset[int]] = {
    d: frozenset(id(b.__dict__[d]) for b in _TRUSTED_BASES if d in b.__dict__) for d in _CMP_DUNDERS
}
_SEQUENCE_BASES: tuple[Any, ...] = (list, tuple, set, frozenset, collections.deque)


def _lookup(t: type, name: str) -> Any:
    for klass in _type_mro(t):
        d = _type_dict(klass)
        if name in d:
            return d[name]
    return None


def _pristine_type(t: type) -> bool:
    """True when `t` compares, tests truth and length exactly like a trusted base class."""
    for name in _CMP_DUNDERS:
        impl = _lookup(t, name)
        if impl is not None and id(impl) not in _TRUSTED_IMPLS[name]:
            return False
    return True


def _children(v: Any, t: type) -> list[Any]:
    # Unbound base-class methods read the real storage, not an overridden __iter__.
    if issubclass(t, dict):
        return [*dict.keys(v), *dict.values(v)]
    for base in _SEQUENCE_BASES:
        if issubclass(t, base):
            return list(base.__iter__(v))
    return []


def is_plain(value: Any) -> bool:
    """Built only from None, bool, int, float, complex, str, bytes, list, tuple, set, dict."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _ATOMIC:
            continue
        if t not in _PLAIN_CONTAINERS:
            return False
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(_children(v, t))
    return True


def is_trusted(value: Any) -> bool:
    """No comparison, truth or length method that the program wrote, at any depth."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _ATOMIC or id(v) in seen:
            continue
        seen.add(id(v))
        if t not in _PLAIN_CONTAINERS and not _pristine_type(t):
            return False
        stack.extend(_children(v, t))
    return True


# ---------------------------------------------------------------------------------------------
# Test suites: compiled once in the zygote (cached), with asserts instrumented.
# ---------------------------------------------------------------------------------------------
_OPS: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "Eq": (operator.eq, "=="),
    "NotEq": (operator.ne, "!="),
    "Lt": (operator.lt, "<"),
    "LtE": (operator.le, "<="),
    "Gt": (operator.gt, ">"),
    "GtE": (operator.ge, ">="),
    "In": (lambda a, b: a in b, "in"),
    "NotIn": (lambda a, b: a not in b, "not in"),
    "Is": (operator.is_, "is"),
    "IsNot": (operator.is_not, "is not"),
}

# One entry per instrumented assert: (op name or "truth"/"not", actual value is the left operand)
CmpTable = list[tuple[str, bool]]
CompiledSuite = tuple[str, Any, tuple[tuple[bool, Any, int], ...], CmpTable]


def _mentions_candidate(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "candidate" for n in ast.walk(node))


def _at(node: ast.expr, like: ast.expr) -> ast.expr:
    node.lineno, node.col_offset = like.lineno, like.col_offset
    node.end_lineno, node.end_col_offset = like.end_lineno, like.end_col_offset
    return node


def _instrument(node: ast.Assert, table: CmpTable) -> None:
    """`assert L op R` -> `assert __cc_cmp__(k, L, R)`; `assert [not] X` -> `__cc_truth__(k, X)`.

    The helpers evaluate exactly what the assert would, but keep the operands so a failure can
    report expected vs actual, and refuse values whose comparison methods the program wrote.
    """
    test = node.test
    k = len(table)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right = test.left, test.comparators[0]
        actual_left = _mentions_candidate(left) or not _mentions_candidate(right)
        table.append((type(test.ops[0]).__name__, actual_left))
        func, args = "__cc_cmp__", [left, right]
    else:
        negate = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
        value = test.operand if isinstance(test, ast.UnaryOp) and negate else test
        table.append(("not" if negate else "truth", True))
        func, args = "__cc_truth__", [value]
    name = _at(ast.Name(func, ast.Load()), test)
    node.test = _at(ast.Call(name, [_at(ast.Constant(k), test), *args], []), test)


def compile_suite(entry_point: str, preamble: str, steps: list[list[Any]]) -> CompiledSuite:
    """`steps` are `[source, is_test, line]`; raises SyntaxError for a broken test suite."""
    table: CmpTable = []
    compiled = []
    for source, is_test, line in steps:
        # Leading newlines put the step at its line in the test file, for tracebacks.
        tree = ast.parse("\n" * max(0, int(line) - 1) + source, TEST_FILE)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                _instrument(node, table)
        compiled.append((bool(is_test), compile(tree, TEST_FILE, "exec", dont_inherit=True), line))
    pre = compile(preamble, TEST_FILE, "exec", dont_inherit=True)
    return entry_point, pre, tuple(compiled), table


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------
def _enc(v: Any) -> str:
    t = type(v)
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return int.__repr__(v)
    if t is float:
        return float.__repr__(v) if v == v and v not in (float("inf"), float("-inf")) else "null"
    if t is str:
        return _esc(v)
    if t is dict:
        return "{" + ",".join(_esc(k) + ":" + _enc(x) for k, x in dict.items(v)) + "}"
    if t is list or t is tuple:
        return "[" + ",".join(_enc(x) for x in v) + "]"
    return _esc(str.__str__(repr(v)))


class _Reporter:
    """Writes result lines to fd 3. The results memfd is a file, so RLIMIT_FSIZE bounds it: past
    `budget` bytes (half of it) a test reports its outcome only (no expected/actual/message),
    which keeps the verdict whole for about 9,000 more tests per MB of the file-size limit."""

    def __init__(self, fd: int, nonce: str, budget: int = 1 << 62) -> None:
        self.fd, self.nonce, self.budget, self.written = fd, nonce, budget, 0

    def send(self, msg: dict[str, Any]) -> None:
        data = (_enc({**msg, "n": self.nonce}) + "\n").encode("ascii")
        if self.written + len(data) > self.budget and msg.get("t") == "test":
            slim = {"t": "test", "i": msg.get("i"), "o": msg.get("o"), "n": self.nonce}
            data = (_enc(slim) + "\n").encode("ascii")
        self.written += len(data)
        while data:
            data = data[_write(self.fd, data) :]


def _text(s: Any) -> str:
    s = str.__str__(s) if issubclass(type(s), str) else "<non-string>"
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s if len(s) <= _MAX_TEXT else s[: _MAX_TEXT - 3] + "..."


def _safe_repr(v: Any) -> str:
    try:
        return _text(repr(v))
    except _BaseException:
        return f"<unrepresentable {_type_name(type(v))}>"


def _safe_str(e: BaseException) -> str:
    try:
        return _text(str(e))
    except _BaseException:
        return f"<unprintable {_type_name(type(e))}>"


def _program_line(e: BaseException) -> int | None:
    """Line of the deepest frame in the program under test, if the error passed through it."""
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _raised_in_program(e: BaseException) -> bool:
    tb = e.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename == PROGRAM_FILE


def _error(e: BaseException) -> dict[str, Any]:
    return {"error_type": _type_name(type(e)), "message": _safe_str(e), "line": _program_line(e)}


def _print_traceback(e: BaseException) -> None:
    try:
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.__stderr__)
    except _BaseException:
        pass


# ---------------------------------------------------------------------------------------------
# Confinement (runs first in the child, as root when the sandbox is privileged)
# ---------------------------------------------------------------------------------------------
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


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()  # type: ignore[union-attr]
        except _BaseException:
            pass


def _compile_program(rep: _Reporter, program: str) -> Any:
    try:
        code = compile(program, PROGRAM_FILE, "exec", dont_inherit=True)
    except SyntaxError as e:
        rep.send({"t": "syntax", "message": _text(e.msg or "invalid syntax"), "line": e.lineno,
                  "col": e.offset, "text": _text(e.text.rstrip("\n")) if e.text else None})  # fmt: skip
        return None
    except ValueError as e:  # e.g. null bytes in the source (3.11)
        rep.send({"t": "syntax", "message": _safe_str(e), "line": None, "col": None, "text": None})
        return None
    except _BaseException as e:  # MemoryError, RecursionError while compiling
        rep.send({"t": "load_error", **_error(e)})
        return None
    lines = program.splitlines(keepends=True)
    linecache.cache[PROGRAM_FILE] = (len(program), None, lines, PROGRAM_FILE)
    return code


def _new_module(name: str) -> dict[str, Any]:
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # dataclasses and pickle look the module up
    ns = mod.__dict__
    ns["__builtins__"] = builtins
    return ns


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
def _describe_expected(op: str, expected: Any, actual_left: bool) -> str:
    if op == "Eq":
        return _safe_repr(expected)
    sym = _OPS[op][1]
    r = _safe_repr(expected)
    return f"actual {sym} {r}" if actual_left else f"{r} {sym} actual"


def run_asserts(rep: _Reporter, program: str, suite: CompiledSuite) -> None:
    entry, pre_code, steps, table = suite
    code = _compile_program(rep, program)
    if code is None:
        return
    ns = _new_module("solution")
    try:
        exec(code, ns)
    except _BaseException as e:
        _print_traceback(e)
        rep.send({"t": "load_error", **_error(e)})
        return
    rep.send({"t": "loaded"})

    # last failing comparison: (k, actual, expected, untrusted)
    last: list[tuple[int, Any, Any, bool] | None] = [None]

    def cmp(k: int, left: Any, right: Any) -> bool:
        op, actual_left = table[k]
        actual, expected = (left, right) if actual_left else (right, left)
        if op not in ("Is", "IsNot") and is_plain(expected) and not is_trusted(actual):
            last[0] = (k, actual, expected, True)
            return False
        ok = bool(_OPS[op][0](left, right))
        if not ok:
            last[0] = (k, actual, expected, False)
        return ok

    def truth(k: int, value: Any) -> bool:
        if not is_trusted(value):
            last[0] = (k, value, None, True)
            return False
        ok = bool(value) if table[k][0] == "truth" else not value
        if not ok:
            last[0] = (k, value, None, False)
        return ok

    tns = dict(ns)  # tests see the program's helpers (HumanEval's tests call e.g. `poly`)
    tns.update(__builtins__=PRISTINE_BUILTINS, __name__="__check__", __cc_cmp__=cmp,
               __cc_truth__=truth)  # fmt: skip
    blocked: dict[str, Any] | None = None
    try:
        exec(pre_code, tns)
    except _BaseException as e:
        blocked = {**_error(e), "message": "not run: the test preamble raised " + _safe_str(e)}
    if blocked is None:
        if entry in ns:
            tns["candidate"] = ns[entry]
        else:
            msg = f"not run: the program does not define `{entry}`"
            blocked = {"error_type": "NameError", "message": msg, "line": None}

    for i, (is_test, step_code, line) in enumerate(steps):
        if blocked is not None:
            if is_test:
                rep.send({"t": "test", "i": i, "o": "runtime_error", **blocked})
            continue
        last[0] = None
        t0 = _perf()
        exc: BaseException | None = None
        try:
            exec(step_code, tns)
        except _BaseException as e:
            exc = e
        dur = _perf() - t0
        if not is_test:
            if exc is not None:
                blocked = {**_error(exc), "message": f"not run: setup at test line {line} raised "
                           + _type_name(type(exc)) + ": " + _safe_str(exc)}  # fmt: skip
            continue
        rep.send({"t": "test", "i": i, "dur": dur, **_step_result(exc, last[0], table)})
    rep.send({"t": "done"})


def _step_result(
    exc: BaseException | None, last: tuple[int, Any, Any, bool] | None, table: CmpTable
) -> dict[str, Any]:
    if exc is None:
        return {"o": "passed"}
    t = type(exc)
    if issubclass(t, _AssertionError) and not _raised_in_program(exc):
        res: dict[str, Any] = {"o": "wrong_answer"}
        if exc.args:
            res["message"] = _safe_str(exc)
        if last is not None:
            k, actual, expected, untrusted = last
            op, actual_left = table[k]
            if untrusted:
                name = _type_name(type(actual))
                res["actual"] = f"<{name} object>"
                res["message"] = (f"untrusted comparison: the value of type {name} defines its "
                                  "own comparison/truth methods")  # fmt: skip
            else:
                res["actual"] = _safe_repr(actual)
                if op == "truth":
                    res["expected"] = "a truthy value"
                elif op == "not":
                    res["expected"] = "a falsy value"
                else:
                    res["expected"] = _describe_expected(op, expected, actual_left)
        return res
    if issubclass(t, _MemoryError):
        return {"o": "memory_exceeded", **_error(exc)}
    return {"o": "runtime_error", **_error(exc)}


def run_io(rep: _Reporter, program: str) -> int:
    code = _compile_program(rep, program)
    if code is None:
        return 1
    ns = _new_module("__main__")
    status, err = 0, None
    try:
        exec(code, ns)
    except _SystemExit as e:
        c = e.code
        if c is None:
            status = 0
        elif type(c) is int:
            status = c
        else:
            status = 1
            try:
                print(c, file=sys.stderr)
            except _BaseException:
                pass
    except _BaseException as e:
        status, err = 1, _error(e)
        _print_traceback(e)
    _flush()
    rep.send({"t": "io_exit", "code": status, "error": err})
    return status


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


def warm_up(rounds: int = 64) -> None:
    """Run the judging code on a tiny trusted program in the zygote, before it forks.

    CPython 3.11 counts calls and specializes bytecode in place, inside the code objects: done
    here once, a child no longer writes to (and so copies) the pages holding our functions'
    code. Leaves no trace: the result lines go to /dev/null, the module and source are dropped.
    """
    suite = compile_suite("f", "", [["assert candidate() is None", True, 1],
                                    ["assert candidate() == 1", True, 2],
                                    ["assert not candidate()", True, 3]])  # fmt: skip
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        rep = _Reporter(fd, "0" * 24)
        for _ in range(rounds):
            run_asserts(rep, "def f():\n    return None\n", suite)
    finally:
        os.close(fd)
        sys.modules.pop("solution", None)
        linecache.cache.pop(PROGRAM_FILE, None)


def child_main(u: dict[str, Any]) -> None:
    """Entry point in the forked child. Never returns."""
    try:
        _confine(u)
    except _BaseException as e:
        try:  # the program has not run yet: this is the sandbox's failure, never the program's
            _Reporter(u["res_w"], u["nonce"]).send(
                {"t": "infra", "message": _type_name(type(e)) + ": " + _safe_str(e)}
            )
        finally:
            os._exit(70)
    # From here on the program runs in this process: a failure of ours is one it caused, so it
    # surfaces as a run that ended without its "done" message (never as an infra error).
    status = 71
    try:
        rep = _Reporter(RESULTS_FD, u["nonce"], u["results_budget"])
        rep.send({"t": "confined"})  # an "infra" report after this one is a forgery
        if u["kind"] == "asserts":
            run_asserts(rep, u["program"], u["suite"])
            status = 0
        else:
            status = run_io(rep, u["program"]) & 0xFF
        _flush()
        # Clean up after ourselves so the zygote need not fork a sweeper or remove the directory:
        # it trusts "clean" only from a child that then exits normally.
        if u.get("uid") is not None:
            _sweep_own_uid()
        if _empty_workdir(u["workdir"]):
            rep.send({"t": "clean"})
    finally:
        _flush()
        os._exit(status)
