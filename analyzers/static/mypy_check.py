"""mypy on the document with the completion inserted, in process, warm.

How: the machinery behind `dmypy`, driven directly. One `FineGrainedBuildManager` per
(workspace, mypy config, interpreter) keeps typeshed, the project's modules and their
dependency graph in memory; a candidate is a one-module update (15-20 ms for a 300-line
module, against 150+ ms for a `mypy` process with a warm cache). The candidate's text reaches mypy through
a shadow file (mypy's `--shadow-file`): the document keeps its real path, so its module name,
relative imports and per-module config sections stay right, and the user's file is never
written. Unsaved buffers of other files are shadowed the same way.

mypy is not thread-safe and keeps global state, so every build and update runs under one lock.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collabcoder.analyzers.static.base import AnalyzerUnavailable, BlockingAnalyzer, locked
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.mypy_causes import (
    Baselines,
    MypyMessage,
    MypyOutcome,
    decide_outside,
    elsewhere_diagnostic,
    site_of,
)
from collabcoder.analyzers.static.parsing import ParsedDocument, parse_code
from collabcoder.analyzers.static.result import (
    AnalyzerResult,
    Diagnostic,
    Severity,
    failed_result,
    passed_result,
)

# Held for every build and update of every checker (mypy's type state is process-global).
MYPY_LOCK = threading.Lock()
MAX_CHECKERS = 2  # each holds typeshed's ASTs in memory: ~100-200 MB
# A first build stopped by a blocking error (a syntax error in an imported module) is retried
# after this long, not on every candidate: each attempt is a cold build (a second or more).
RETRY_BLOCKED_BUILD_S = 10.0

_CONFIG_NAMES = ("mypy.ini", ".mypy.ini", "pyproject.toml", "setup.cfg")
_MISSING_STUB_CODES = frozenset({"import-untyped"})
_MISSING_MODULE_CODES = frozenset({"import-not-found", "import"})


class MypyUnavailable(AnalyzerUnavailable):
    """mypy could not be set up for this workspace (bad config, bad interpreter, ...)."""


# -- what mypy reads ----------------------------------------------------------------------------


def elide_bodies(doc: ParsedDocument, keep: range) -> str:
    """The document with the bodies of functions the completion is not in replaced by `raise`.

    Only errors in the completion's lines are reported, and those depend on the other
    functions' signatures, never on their bodies (mypy does not infer return types), so checking
    those bodies is wasted time: about half of a warm check on a 300-line module. Kept whole:
    functions that hold a completion line, that assign attributes (`self.x = ...` declares `x`),
    or that declare `global`/`nonlocal`. Line and column numbers do not move.
    """
    code = doc.code
    if "\r" in code:  # ast counts a lone \r as a line break; str.split("\n") would not
        return code
    sticky = sorted(
        [n.lineno for n in doc.of(ast.Attribute) if not isinstance(n.ctx, ast.Load)]
        + [n.lineno for n in doc.of(ast.Global, ast.Nonlocal)]
    )
    lines = code.split("\n")
    spans: list[tuple[int, int, str]] = []
    bodies: list[list[ast.stmt]] = [doc.tree.body]
    while bodies:
        for node in bodies.pop():
            if isinstance(node, ast.ClassDef):
                bodies.append(node.body)
                continue
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            start, end = node.body[0].lineno, node.end_lineno or node.body[-1].lineno
            indent = lines[start - 1][: node.body[0].col_offset]
            first_sticky = bisect_left(sticky, start)
            if (
                indent.strip()  # body on the `def` line
                or (keep and start <= keep[-1] and keep[0] <= end)
                or (first_sticky < len(sticky) and sticky[first_sticky] <= end)
            ):
                continue
            spans.append((start, end, indent))
    for start, end, indent in spans:
        # Not `...`: mypy reports an "empty-body" error for each such function returning a
        # value, and the fine-grained manager re-processes every target with errors at every
        # update. A body that raises is clean for any return type, generators included.
        lines[start - 1] = indent + "raise NotImplementedError"
        for i in range(start, end):
            lines[i] = ""
    return "\n".join(lines)


# -- configuration -------------------------------------------------------------------------------


def find_mypy_config(document: Path | None, workspace: Path) -> Path | None:
    """The mypy config that applies to `document`: the nearest mypy.ini, .mypy.ini,
    pyproject.toml with [tool.mypy] or setup.cfg with [mypy], from the document's folder up to
    the workspace root."""
    start = document.parent if document is not None else workspace
    for folder in (start, *start.parents):
        for name in _CONFIG_NAMES:
            candidate = folder / name
            if not candidate.is_file():
                continue
            if name in ("mypy.ini", ".mypy.ini"):
                return candidate
            text = candidate.read_text(encoding="utf-8", errors="replace")
            if (name == "pyproject.toml" and "[tool.mypy" in text) or (
                name == "setup.cfg" and "[mypy" in text
            ):
                return candidate
        if folder == workspace or (folder / ".git").exists():
            break
    return None


_version_cache: dict[str, tuple[int, int]] = {}


def interpreter_version(python: str) -> tuple[int, int]:
    """(major, minor) of the user's interpreter; asked once per interpreter."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return sys.version_info[:2]
    if python not in _version_cache:
        try:
            out = subprocess.run(
                [python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=15, check=True,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError) as exc:
            raise MypyUnavailable(f"cannot run the interpreter {python!r}: {exc}") from exc
        _version_cache[python] = (int(out[0]), int(out[1]))
    return _version_cache[python]


# -- one warm build ------------------------------------------------------------------------------


class MypyChecker:
    """A fine-grained mypy build for one (workspace, config, interpreter). Not thread-safe:
    callers hold `MYPY_LOCK`."""

    def __init__(self, workspace: Path, config_file: Path | None, python: str) -> None:
        import mypy.main
        from mypy.fscache import FileSystemCache

        self.workspace = workspace
        self.config_file = config_file
        self.python = python
        # Shadow copies of candidates live here; removed when the checker is dropped.
        self._tmp = tempfile.TemporaryDirectory(prefix="collab-mypy-")
        self._scratch = Path(self._tmp.name)
        self.fscache = FileSystemCache()
        out, err = io.StringIO(), io.StringIO()
        flags = ["-i", "--config-file", str(config_file) if config_file else ""]
        flags += ["--python-executable", python]
        try:
            _, options = mypy.main.process_options(
                flags, stdout=out, stderr=err, require_targets=False, server_options=True,
                fscache=self.fscache,
            )
        except SystemExit as exc:
            raise MypyUnavailable(
                f"mypy rejected its configuration ({config_file}): "
                f"{(err.getvalue() or out.getvalue()).strip()[:500]}"
            ) from exc
        config_text = config_file.read_text(errors="replace") if config_file else ""
        if "python_version" not in config_text:
            # mypy would assume *our* Python; check against the user's (within mypy's range).
            import mypy.defaults

            version = interpreter_version(python)
            options.python_version = max(version, mypy.defaults.PYTHON3_VERSION_MIN)
        # What dmypy's Server sets up, plus output we can parse without guessing.
        options.incremental = True
        options.fine_grained_incremental = True
        options.use_fine_grained_cache = False
        options.cache_fine_grained = False
        options.cache_dir = os.devnull
        options.local_partial_types = True
        options.raise_exceptions = True
        options.num_workers = 0
        options.install_types = False  # never install anything into the user's environment
        options.non_interactive = True
        options.show_column_numbers = True
        options.show_error_end = True
        options.show_absolute_path = True
        options.hide_error_codes = False
        options.output = "json"
        options.pretty = False
        options.color_output = False
        options.error_summary = False
        options.junit_xml = None
        options.report_dirs = {}
        options.export_types = False
        if options.follow_imports == "silent":  # unsupported by fine-grained mode; we filter
            options.follow_imports = "normal"  # to the document anyway
        options.shadow_file = []
        self.options = options
        self._fgm: Any = None  # mypy.server.update.FineGrainedBuildManager once built
        self._modules: dict[str, tuple[str, str | None]] = {}  # path -> (module id, base dir)
        self._shadowed: dict[str, str] = {}  # real path -> text hash currently shadowed
        self._last_document: str | None = None
        self._stamps: dict[str, tuple[str, int, int]] = {}  # path -> (module, mtime_ns, size)
        self._graph_size = 0
        self._blocked: tuple[float, str] | None = None  # (when, why) the first build failed

    # -- helpers --

    def _shadow_path(self, real: str) -> str:
        digest = hashlib.sha1(real.encode()).hexdigest()[:16]
        return str(self._scratch / f"{digest}_{Path(real).name}")

    def _write_shadow(self, real: str, text: str) -> str:
        shadow = self._shadow_path(real)
        with open(shadow, "w", encoding="utf-8") as fh:
            fh.write(text)
        return shadow

    def _module_for(self, path: str) -> tuple[str, str | None]:
        """(module id, base dir) of a file, as `mypy FILE` would name it."""
        from mypy.find_sources import InvalidSourceList, create_source_list

        if path not in self._modules:
            try:
                (source,) = create_source_list([path], self.options, self.fscache)
            except InvalidSourceList as exc:
                raise MypyUnavailable(str(exc)) from exc
            self._modules[path] = (source.module, source.base_dir)
        return self._modules[path]

    def _stamp(self, path: str, module: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        self._stamps[path] = (module, st.st_mtime_ns, st.st_size)

    def _stamp_new_modules(self) -> None:
        """Start watching the workspace modules the last build or update brought in."""
        graph = self._fgm.graph
        if len(graph) == self._graph_size:
            return
        ws = str(self.workspace) + os.sep
        for state in graph.values():
            path = os.path.abspath(state.path) if state.path else None
            if path and path.startswith(ws) and path not in self._stamps:
                if path not in self._shadowed:
                    self._stamp(path, state.id)
        self._graph_size = len(graph)

    def _changed_on_disk(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Watched files saved since the last check. Their new stamps are taken here, before
        mypy reads them, so a save during the check shows up at the next one."""
        changed, removed = [], []
        for path, (module, mtime, size) in list(self._stamps.items()):
            try:
                st = os.stat(path)
            except OSError:
                removed.append((module, path))
                del self._stamps[path]
                continue
            if (st.st_mtime_ns, st.st_size) != (mtime, size):
                changed.append((module, path))
                self._stamps[path] = (module, st.st_mtime_ns, st.st_size)
        return changed, removed

    def _module_in_graph(self, path: str) -> str | None:
        for state in self._fgm.graph.values():
            if state.path and os.path.abspath(state.path) == path:
                return str(state.id)
        return None

    # -- the check --

    def check(self, document: Path | None, text: str, overrides: Mapping[str, str]) -> MypyOutcome:
        if document is not None and document.suffix in (".py", ".pyi") and document.is_file():
            path = str(document)
            shadow_text: dict[str, str] = {path: text}
        else:  # unsaved, never-written document: check a scratch copy, imports from workspace
            path = str(self._scratch / "__collab_untitled__.py")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            shadow_text = {}
        for other, other_text in overrides.items():
            if other != path and os.path.isfile(other):
                shadow_text[other] = other_text
        module, base_dir = self._module_for(path)
        if shadow_text.get(path) is None:
            base_dir = str(self.workspace)  # so the scratch copy finds the workspace's modules
        if self._fgm is None:
            if self._blocked and time.monotonic() - self._blocked[0] < RETRY_BLOCKED_BUILD_S:
                return MypyOutcome((), blocked=self._blocked[1])
            return self._initial_build(path, module, base_dir, shadow_text)
        return self._update(path, module, shadow_text)

    def _initial_build(
        self, path: str, module: str, base_dir: str | None, shadow_text: dict[str, str]
    ) -> MypyOutcome:
        import mypy.build
        from mypy.errors import CompileError
        from mypy.modulefinder import BuildSource
        from mypy.server.update import FineGrainedBuildManager

        self.options.shadow_file = [[p, self._write_shadow(p, t)] for p, t in shadow_text.items()]
        source = BuildSource(path, module, None, base_dir)
        try:
            result = mypy.build.build(sources=[source], options=self.options, fscache=self.fscache)
        except CompileError as exc:
            # A blocking error before any state exists (a syntax error in an imported module):
            # nothing to keep; retried after RETRY_BLOCKED_BUILD_S.
            why = "; ".join(_plain(m) for m in exc.messages)[:500] or "blocking error"
            self._blocked = (time.monotonic(), why)
            return MypyOutcome((), blocked=why)
        self._fgm = FineGrainedBuildManager(result)
        self._shadowed = {p: _digest(t) for p, t in shadow_text.items()}
        self._last_document = path
        self._stamp_new_modules()
        self.fscache.flush()
        self._fgm.flush_cache()
        return MypyOutcome(_document_messages(result.errors, path))

    def _update(self, path: str, module: str, shadow_text: dict[str, str]) -> MypyOutcome:
        fgm = self._fgm
        manager = fgm.manager
        changed, removed = self._changed_on_disk()
        changed.append((module, path))
        # Shadow the document and overrides; un-shadow what is no longer overridden (a saved or
        # closed buffer, or the previous document, which still holds its last candidate).
        for real, text in shadow_text.items():
            digest = _digest(text)
            if real == path or self._shadowed.get(real) != digest:
                manager.shadow_map[real] = self._write_shadow(real, text)
                self._shadowed[real] = digest
                self._stamps.pop(real, None)  # its text comes from the editor now
                other = self._module_in_graph(real) if real != path else None
                if other is not None:
                    changed.append((other, real))
        for real in [p for p in self._shadowed if p not in shadow_text]:
            del self._shadowed[real]
            manager.shadow_map.pop(real, None)
            other = self._module_in_graph(real)
            if other is not None:
                changed.append((other, real))
                self._stamp(real, other)
        manager.shadow_equivalence_map.clear()
        self.options.shadow_file = [[p, s] for p, s in manager.shadow_map.items()]
        self._last_document = path
        self.fscache.flush()
        fgm.flush_cache()
        messages = fgm.update(_dedupe(changed), removed)
        self._stamp_new_modules()
        blocked = None
        if fgm.blocking_error is not None:
            blocked = "; ".join(_plain(m) for m in messages)[:500] or "blocking error"
        return MypyOutcome(_document_messages(messages, path), blocked)

def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _dedupe(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(pairs))


def _plain(line: str) -> str:
    try:
        data = json.loads(line)
    except ValueError:
        return line
    return f"{data.get('file')}:{data.get('line')}: {data.get('message')}"


def _document_messages(lines: list[str], path: str) -> tuple[MypyMessage, ...]:
    out = []
    for raw in lines:
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if os.path.abspath(str(data.get("file"))) != path:
            continue
        end_line, end_col = data.get("end_line"), data.get("end_column")
        out.append(
            MypyMessage(
                line=int(data["line"]),
                column=max(0, int(data.get("column") or 0)),
                end_line=end_line if isinstance(end_line, int) and end_line > 0 else None,
                end_column=end_col if isinstance(end_col, int) and end_col >= 0 else None,
                message=str(data["message"]),
                severity=str(data.get("severity", "error")),
                code=data.get("code"),
                hint=data.get("hint"),
            )
        )
    return tuple(out)


# -- the pool ------------------------------------------------------------------------------------

_checkers: OrderedDict[tuple[str, str | None, int, str], MypyChecker] = OrderedDict()


def checker_for(ctx: AnalysisContext) -> MypyChecker:
    """The warm checker for this context's workspace, config and interpreter (caller holds
    MYPY_LOCK). A changed config file gets a fresh checker."""
    workspace = ctx.workspace
    config = find_mypy_config(ctx.document, workspace)
    mtime = config.stat().st_mtime_ns if config is not None else 0
    key = (str(workspace), str(config) if config else None, mtime, ctx.interpreter)
    checker = _checkers.get(key)
    if checker is None:
        checker = MypyChecker(workspace, config, ctx.interpreter)
        _checkers[key] = checker
        while len(_checkers) > MAX_CHECKERS:
            _checkers.popitem(last=False)
    _checkers.move_to_end(key)
    return checker


def discard_checker(checker: MypyChecker) -> None:
    for key in [k for k, v in _checkers.items() if v is checker]:
        del _checkers[key]


def reset_checkers() -> None:
    """Drop every warm build (tests; after the user's environment changed)."""
    with MYPY_LOCK:
        _checkers.clear()


# -- the analyzer --------------------------------------------------------------------------------


class MypyAnalyzer(BlockingAnalyzer):
    name = "mypy"
    kind = "critical"

    def __init__(self) -> None:
        self._baselines = Baselines()  # the document without the completion, per cursor site

    def check(self, ctx: AnalysisContext, deadline: float) -> AnalyzerResult:
        doc = parse_code(ctx.code)
        site = site_of(ctx, doc)
        text = elide_bodies(doc, site.keep) if doc is not None else ctx.code
        with locked(MYPY_LOCK, deadline, "mypy"):
            checker = checker_for(ctx)
            try:
                outcome = checker.check(ctx.document, text, ctx.overrides)
                caused = decide_outside(ctx, site, outcome, self._baselines.getter(
                    ctx, site, (id(checker), str(ctx.document)),
                    lambda plain: checker.check(ctx.document, plain, ctx.overrides)))
            except Exception:
                # mypy's state may be half-updated: rebuild from scratch next time.
                discard_checker(checker)
                raise
        return self._judge(ctx, outcome, caused)

    def _judge(
        self, ctx: AnalysisContext, outcome: MypyOutcome, caused: Mapping[int, bool] | None = None
    ) -> AnalyzerResult:
        diagnostics: list[Diagnostic] = []
        env_notes: list[str] = []
        for i, msg in enumerate(outcome.messages):
            if caused is not None and i in caused:  # decided by mypy_causes
                if caused[i]:
                    diagnostics.append(elsewhere_diagnostic(ctx, msg))
                continue
            inside = ctx.in_completion(msg.line, msg.column, msg.end_line, msg.end_column)
            if msg.code in _MISSING_STUB_CODES:
                # The package is installed but untyped: mypy treats it as Any. Worth knowing,
                # never the completion's fault, and never fixed by installing anything here.
                env_notes.append(msg.message)
                if inside:
                    diagnostics.append(self._diag(
                        ctx, msg, "note", " (the package is used untyped; not an error)"))
                continue
            if not inside:
                if msg.code in _MISSING_MODULE_CODES:
                    env_notes.append(msg.message)
                continue
            severity: Severity = "error" if msg.severity == "error" else "note"
            if msg.code in _MISSING_MODULE_CODES:
                # Imported by the completion and absent from the user's environment.
                diagnostics.append(
                    self._diag(ctx, msg, severity, " (not installed in the project's environment)")
                )
                continue
            diagnostics.append(self._diag(ctx, msg, severity))
        details: dict[str, Any] = {"environment_notes": env_notes} if env_notes else {}
        errors = tuple(d for d in diagnostics if d.severity == "error")
        notes = tuple(d for d in diagnostics if d.severity != "error")
        if errors:
            return failed_result(self.name, self.kind, errors + notes, details=details)
        if outcome.blocked:
            return passed_result(
                self.name, self.kind,
                f"mypy could not check the document: {outcome.blocked}",
                details={**details, "blocked": outcome.blocked},
            )
        text = "No mypy errors caused by the completion."
        if notes:
            text += "\n" + "\n".join(d.render() for d in notes)
        return passed_result(self.name, self.kind, text, diagnostics=notes, details=details)

    @staticmethod
    def _diag(
        ctx: AnalysisContext, msg: MypyMessage, severity: Severity, extra: str = ""
    ) -> Diagnostic:
        line, col = ctx.to_completion_position(msg.line, msg.column)
        end_line = end_col = None
        if msg.end_line is not None and msg.end_column is not None:
            end_line, end_col = ctx.to_completion_position(msg.end_line, msg.end_column)
        text = msg.message + extra
        # Keep "Did you mean ...?"; drop links and install advice (nothing gets installed).
        hints = [h for h in (msg.hint or "").splitlines()
                 if h and "://" not in h and "install" not in h]
        if hints:
            text += " (" + "; ".join(hints[:2]) + ")"
        return Diagnostic(line, col, text, severity, msg.code, end_line, end_col)

