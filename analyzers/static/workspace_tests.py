"""The workspace's tests of the function under the cursor, and the workspace as the sandbox sees it.

Discovery (here, with `ast`, nothing imported): pytest and unittest test functions in the
workspace's test files (`test_*.py`, `*_test.py`, unsaved buffers included, on disk or not)
that refer to the function by name.

Running them (in the sandbox): the program is a bootstrap that installs an import finder
serving the workspace's Python sources from the job itself: the candidate document stands in
for the file on disk, unsaved buffers for theirs, and nothing is written or read back from the
real files (they may not even be visible inside the sandbox, whose /tmp is private). The user's
interpreter's own sys.path follows, read-only, for third-party imports (pytest included).
"""

from __future__ import annotations

import ast
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.testcases import AssertSuite, TestStep

_SKIP_DIRS = {".git", ".hg", ".venv", "venv", "env", "node_modules", "__pycache__", "build",
              "dist", "site-packages", ".tox", ".nox", ".mypy_cache", ".pytest_cache"}  # fmt: skip
MAX_FILES = 400  # Python files looked at per discovery
MAX_SOURCE_BYTES = 2_000_000  # shipped to the sandbox per job
_DISCOVERY_TTL_S = 2.0

# Runs in the sandbox before anything else (stdlib only). `_collab_install` puts a finder in
# front of sys.meta_path; `_collab_run` runs one test and raises `_CollabNotRun` for a test that
# cannot run here (fixtures, skip marks, its module failed to import).
BOOTSTRAP = '''\
import importlib as _cc_importlib
import importlib.abc as _cc_abc
import importlib.machinery as _cc_machinery
import importlib.util as _cc_util
import linecache as _cc_linecache
import os as _cc_os
import sys as _cc_sys


class _CollabNotRun(Exception):
    pass


class _CollabFinder(_cc_abc.MetaPathFinder, _cc_abc.Loader):
    def __init__(self, files, roots):
        self.files, self.roots, self.dirs = files, roots, set()
        for path in files:
            d = _cc_os.path.dirname(path)
            while len(d) > 1 and d not in self.dirs:
                self.dirs.add(d)
                d = _cc_os.path.dirname(d)

    def find_spec(self, name, path=None, target=None):
        tail = name.rpartition(".")[2]
        bases = ([_cc_os.path.join(r, *name.split(".")) for r in self.roots] if path is None
                 else [_cc_os.path.join(p, tail) for p in path])
        for base in bases:
            if base + "/__init__.py" in self.files:
                return _cc_util.spec_from_file_location(
                    name, base + "/__init__.py", loader=self, submodule_search_locations=[base])
            if base + ".py" in self.files:
                return _cc_util.spec_from_file_location(name, base + ".py", loader=self)
        for base in bases:
            if base in self.dirs:
                spec = _cc_machinery.ModuleSpec(name, None, is_package=True)
                spec.submodule_search_locations = [base]
                return spec
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        path = module.__spec__.origin
        source = self.files[path]
        _cc_linecache.cache[path] = (len(source), None, source.splitlines(True), path)
        exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)


def _collab_install(files, roots, paths):
    finder = _CollabFinder(files, roots)
    _cc_sys.meta_path.insert(0, finder)
    _cc_sys.path.extend(p for p in paths if p not in _cc_sys.path)
    return finder


_collab_modules = {}


def _collab_module(name):
    if name not in _collab_modules:
        try:
            _collab_modules[name] = _cc_importlib.import_module(name)
        except BaseException as exc:
            _collab_modules[name] = exc
    mod = _collab_modules[name]
    if isinstance(mod, BaseException):
        raise _CollabNotRun("its module did not import: %s: %s" % (type(mod).__name__, mod))
    return mod


def _collab_param_sets(fn):
    marks = [m for m in getattr(fn, "pytestmark", []) if getattr(m, "name", "")]
    for m in marks:
        if m.name in ("skip", "skipif", "xfail", "usefixtures"):
            raise _CollabNotRun("marked %s" % m.name)
    params = [m for m in marks if m.name == "parametrize"]
    if not params:
        return [{}]
    if len(params) > 1:
        raise _CollabNotRun("more than one parametrize mark")
    names, values = params[0].args[0], params[0].args[1]
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    out = []
    for v in values:
        v = getattr(v, "values", v)
        out.append(dict(zip(names, v if len(names) > 1 else (v,))))
    return out


def _collab_assert_text(exc, path, files):
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None:
        return str(exc)
    text = files[path].splitlines()[line - 1].strip()
    return "%s (line %d)%s" % (text, line, ": %s" % exc if str(exc) else "")


def _collab_run(module, qualname, files):
    import inspect
    mod = _collab_module(module)
    owner_name, _, name = qualname.rpartition(".")
    try:
        if owner_name:
            import unittest
            cls = getattr(mod, owner_name)
            if issubclass(cls, unittest.TestCase):
                try:
                    cls(name).debug()
                except unittest.SkipTest as exc:
                    raise _CollabNotRun("skipped: %s" % exc) from None
                return
            obj = cls()
            if hasattr(obj, "setup_method"):
                obj.setup_method(getattr(obj, name))
            fn = getattr(obj, name)
        else:
            fn = getattr(mod, name)
        for kwargs in _collab_param_sets(fn):
            needs = [p.name for p in inspect.signature(fn).parameters.values()
                     if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                     and p.name not in kwargs]
            if needs:
                raise _CollabNotRun("needs fixtures: %s" % ", ".join(needs))
            fn(**kwargs)
    except AssertionError as exc:
        raise AssertionError(_collab_assert_text(exc, mod.__file__, files)) from None
'''


@dataclass(frozen=True)
class FoundTest:
    path: str  # absolute path of the test file
    module: str  # its module name inside the sandbox
    qualname: str  # `test_mean` or `TestStats.test_mean`
    line: int


def _walk_py(root: Path) -> list[str]:
    out: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        out.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))
        if len(out) >= MAX_FILES:
            break
    return out[:MAX_FILES]


_listing: dict[str, tuple[float, list[str]]] = {}


def workspace_files(ctx: AnalysisContext) -> list[str]:
    """The workspace's Python files (disk listing cached briefly) plus unsaved buffers."""
    root = str(ctx.workspace)
    now = time.monotonic()
    cached = _listing.get(root)
    if cached is None or now - cached[0] > _DISCOVERY_TTL_S:
        cached = (now, _walk_py(ctx.workspace))
        _listing[root] = cached
    extra = [p for p in ctx.overrides if p.endswith(".py") and p.startswith(root + os.sep)]
    return list(dict.fromkeys([*cached[1], *extra]))


def read_source(ctx: AnalysisContext, path: str) -> str | None:
    """The text the editor has for `path`: the candidate, an unsaved buffer, or the disk file."""
    if ctx.document is not None and path == str(ctx.document):
        return ctx.code
    if path in ctx.overrides:
        return ctx.overrides[path]
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def import_root(path: str, exists: set[str]) -> str:
    """The sys.path entry that imports `path` by its package name: the first folder up that is
    not a package (no __init__.py), as pytest's default import mode does."""
    folder = os.path.dirname(path)
    while os.path.join(folder, "__init__.py") in exists and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def module_name(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


def _is_test_file(path: str) -> bool:
    name = os.path.basename(path)
    return name.startswith("test_") or name.endswith("_test.py")


def _refers_to(node: ast.AST, name: str) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == name) or (isinstance(n, ast.Attribute) and n.attr == name)
        for n in ast.walk(node)
    )


def find_tests(ctx: AnalysisContext, name: str) -> tuple[list[FoundTest], list[str]]:
    """(tests that refer to `name`, the workspace files). Test functions of pytest
    (`test*` functions, `Test*` classes) and unittest (`TestCase` subclasses)."""
    files = workspace_files(ctx)
    exists = set(files)
    doc_stem = ctx.document.stem if ctx.document is not None else None
    found: list[FoundTest] = []
    for path in files:
        if not _is_test_file(path) or path == str(ctx.document):
            continue
        text = read_source(ctx, path)
        if not text or name not in text or (doc_stem and doc_stem not in text):
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        module = module_name(path, import_root(path, exists))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name.startswith("test") and _refers_to(node, name):
                    found.append(FoundTest(path, module, node.name, node.lineno))
            elif isinstance(node, ast.ClassDef) and (
                node.name.startswith("Test") or any("TestCase" in ast.unparse(b) for b in node.bases)
            ):
                for item in node.body:
                    if (isinstance(item, ast.FunctionDef) and item.name.startswith("test")
                            and _refers_to(item, name)):  # fmt: skip
                        found.append(FoundTest(path, module, f"{node.name}.{item.name}", item.lineno))
    return found, files


_sys_paths: dict[str, list[str]] = {}


def interpreter_paths(python: str) -> list[str]:
    """The user's interpreter's sys.path (its site-packages), asked once per interpreter."""
    if python not in _sys_paths:
        try:
            out = subprocess.run(
                [python, "-c", "import sys, json; print(json.dumps(sys.path))"],
                capture_output=True, text=True, timeout=15, check=True, cwd="/",
            ).stdout
            import json

            paths = [p for p in json.loads(out) if isinstance(p, str) and os.path.isdir(p)]
        except (OSError, subprocess.SubprocessError, ValueError):
            paths = []
        _sys_paths[python] = paths
    return _sys_paths[python]


def program_for(
    ctx: AnalysisContext, files: list[str], extra_roots: list[str], document_text: str | None = None
) -> str | None:
    """The sandbox program: the bootstrap, the workspace sources, the document imported as its
    module and its names bound at top level (where the suites look for the entry point).
    None when the document has no file (an untitled buffer) or the sources are too big."""
    doc = ctx.document
    if doc is None:
        return None
    exists = set(files) | {str(doc)}
    sources: dict[str, str] = {}
    size = 0
    for path in sorted(exists):
        text = document_text if document_text is not None and path == str(doc) else None
        text = text if text is not None else read_source(ctx, path)
        if text is None:
            continue
        size += len(text)
        if size > MAX_SOURCE_BYTES:
            return None
        sources[path] = text
    root = import_root(str(doc), exists)
    roots = list(dict.fromkeys([root, str(ctx.workspace), *extra_roots]))
    src = os.path.join(str(ctx.workspace), "src")
    if os.path.isdir(src):
        roots.append(src)
    paths = [*interpreter_paths(ctx.interpreter), str(ctx.workspace)]
    mod = module_name(str(doc), root)
    return (
        BOOTSTRAP
        + f"_collab_files = {sources!r}\n"
        + f"_collab_install(_collab_files, {roots!r}, {paths!r})\n"
        + f"_collab_document = _cc_importlib.import_module({mod!r})\n"
        + "globals().update({k: v for k, v in vars(_collab_document).items()"
        + " if not k.startswith('__')})\n"
    )


def tests_suite(
    ctx: AnalysisContext, entry: str, name: str
) -> tuple[str, AssertSuite, list[FoundTest]] | None:
    """(program, suite, the tests in step order) for the workspace's tests of `name`."""
    found, files = find_tests(ctx, name)
    if not found:
        return None
    exists = set(files)
    program = program_for(ctx, files, [import_root(t.path, exists) for t in found])
    if program is None:
        return None
    steps = tuple(
        TestStep(f"_collab_run({t.module!r}, {t.qualname!r}, _collab_files)\n", True, t.line)
        for t in found
    )
    return program, AssertSuite(entry_point=entry, preamble="", steps=steps), found
