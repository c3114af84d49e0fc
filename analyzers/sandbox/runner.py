"""The child's test runner: run the program and its tests, report each result as a JSON line.

Part of the child's judging code, loaded by path into the zygote with a private copy of the
builtins (see zygote.load_modules). What judges the program (exception classes, ``type``,
``repr``, the operator functions, the JSON encoder) is bound before any program runs, so a
program that patches ``builtins`` or stdlib modules cannot change how its tests are judged.
Results are tagged with the run's nonce; the child (child.py) sends them to fd 3, a memfd the
zygote reads once the child is gone.
"""

from __future__ import annotations

import builtins
import linecache
import operator
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from collabcoder.analyzers.sandbox.suites import CmpTable, CompiledSuite, compile_suite
from collabcoder.analyzers.sandbox.trust import is_plain, is_trusted

try:  # the C encoder does not look anything up in builtins, so a program cannot patch it
    from _json import encode_basestring_ascii as _esc
except ImportError:  # pragma: no cover - CPython always has _json
    from json.encoder import py_encode_basestring_ascii as _esc

PROGRAM_FILE = "<program>"
_MAX_TEXT = 2000  # longest message / repr we report

# Snapshot before any program runs: the namespace the tests (and this module) resolve names in.
PRISTINE_BUILTINS: dict[str, Any] = dict(builtins.__dict__)

_write = os.write
_perf = time.perf_counter
_AssertionError = AssertionError
_MemoryError = MemoryError
_SystemExit = SystemExit
_BaseException = BaseException
_type_name = type.__dict__["__name__"].__get__

# What each instrumented comparison (see suites.py) computes, and how a message writes it.
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


class Reporter:
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


def describe_error(e: BaseException) -> str:
    return _type_name(type(e)) + ": " + _safe_str(e)


def _print_traceback(e: BaseException) -> None:
    try:
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.__stderr__)
    except _BaseException:
        pass


def flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()  # type: ignore[union-attr]
        except _BaseException:
            pass


def _compile_program(rep: Reporter, program: str) -> Any:
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


def run_asserts(rep: Reporter, program: str, suite: CompiledSuite) -> None:
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
                message = f"not run: setup at test line {line} raised {describe_error(exc)}"
                blocked = {**_error(exc), "message": message}
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


def run_io(rep: Reporter, program: str) -> int:
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
    flush_streams()
    rep.send({"t": "io_exit", "code": status, "error": err})
    return status


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
        rep = Reporter(fd, "0" * 24)
        for _ in range(rounds):
            run_asserts(rep, "def f():\n    return None\n", suite)
    finally:
        os.close(fd)
        sys.modules.pop("solution", None)
        linecache.cache.pop(PROGRAM_FILE, None)
