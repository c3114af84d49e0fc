"""Shared jedi state for the signature and hallucination analyzers.

jedi is not thread-safe, so both analyzers work under `JEDI_LOCK` and share one `jedi.Script`
per candidate. Environments and projects are built once per (workspace, interpreter): creating
an environment starts a subprocess of the user's interpreter, which is what lets jedi see that
interpreter's packages.

Speed: a fresh `jedi.Script` starts a fresh inference state, which re-imports every module the
document uses and re-fetches builtins from that subprocess (about 40 round trips per candidate).
Consecutive candidates of one document therefore share one inference state ("session"); it is
replaced when another file it loaded changes on disk, when the unsaved buffers change, and
every `SESSION_MAX_USES` candidates, which bounds both its memo caches and any staleness.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jedi
from parso.cache import parser_cache

from collabcoder.analyzers.static.base import AnalyzerUnavailable
from collabcoder.analyzers.static.context import AnalysisContext

JEDI_LOCK = threading.Lock()
SESSION_MAX_USES = 64

# Inferring a parameter's type from the calls that pass it (jedi's "dynamic params") is a guess;
# an analyzer that rejects candidates must not act on guesses.
jedi.settings.dynamic_params = False
jedi.settings.dynamic_params_for_other_modules = False

_environments: dict[str, Any] = {}
_projects: dict[tuple[str, str], jedi.Project] = {}
_scripts: dict[tuple[Any, ...], jedi.Script] = {}
# Unsaved buffers placed in parso's cache: path -> (text, node cache item identity, mtime).
_seeded: dict[str, tuple[str, int, float]] = {}


@dataclass
class _Session:
    state: Any  # jedi.inference.InferenceState
    overrides: tuple[tuple[str, str], ...]
    uses: int = 0
    stamps: dict[str, float] = field(default_factory=dict)  # module file -> mtime when seen


_sessions: dict[tuple[str, str, str], _Session] = {}


def environment_for(python: str) -> Any:
    env = _environments.get(python)
    if env is None:
        try:
            env = jedi.create_environment(python, safe=False)
        except jedi.InvalidPythonEnvironment as exc:
            raise AnalyzerUnavailable(f"cannot use the interpreter {python!r}: {exc}") from exc
        _environments[python] = env
    return env


def project_for(workspace: Path, python: str) -> jedi.Project:
    key = (str(workspace), python)
    project = _projects.get(key)
    if project is None:
        project = jedi.Project(workspace, environment_path=python)
        _projects[key] = project
    return project


def _seed_overrides(ctx: AnalysisContext, env: Any) -> None:
    """Make jedi read the editor's unsaved buffers instead of the files on disk.

    jedi parses imported modules through parso's cache, which serves a cached tree while the
    file's mtime is not newer than the tree's; placing the buffer's tree there under the real
    path is what jedi-based servers do without an API for it. Dropped again once the buffer is
    no longer overridden.
    """
    grammar = env.get_grammar()
    cache = parser_cache.setdefault(grammar._hashed, {})
    doc = str(ctx.document) if ctx.document else None
    wanted = {p: t for p, t in ctx.overrides.items() if p != doc and os.path.isfile(p)}
    for path in [p for p in _seeded if p not in wanted]:
        cache.pop(Path(path), None)
        del _seeded[path]
    for path, text in wanted.items():
        item = cache.get(Path(path))
        mtime = os.path.getmtime(path)
        seeded = _seeded.get(path)
        if seeded and item is not None and seeded == (text, id(item), mtime):
            continue
        cache.pop(Path(path), None)  # no diff against the disk version: parse the buffer whole
        grammar.parse(code=text, path=path, cache=False, diff_cache=True)
        item = cache.get(Path(path))
        if item is not None:
            _seeded[path] = (text, id(item), mtime)


def _session_is_stale(session: _Session, workspace: str, document: str) -> bool:
    """Has a workspace module this session loaded changed on disk since?"""
    prefix = workspace.rstrip(os.sep) + os.sep
    for values in list(session.state.module_cache._name_cache.values()):
        for value in values:
            path = getattr(getattr(value, "file_io", None), "path", None)
            if path is None:
                continue
            name = str(path)
            if name == document or not name.startswith(prefix):
                continue
            try:
                mtime = os.path.getmtime(name)
            except OSError:
                return True
            if session.stamps.setdefault(name, mtime) != mtime:
                return True
    return False


def _attach_session(script: jedi.Script, ctx: AnalysisContext, path: str, python: str) -> None:
    workspace = str(ctx.workspace)
    key = (workspace, python, path)
    overrides = tuple(sorted(ctx.overrides.items()))
    session = _sessions.get(key)
    if (
        session is None
        or session.overrides != overrides
        or session.uses >= SESSION_MAX_USES
        or _session_is_stale(session, workspace, path)
    ):
        session = _Session(script._inference_state, overrides)
        _sessions[key] = session
        while len(_sessions) > 4:
            del _sessions[next(iter(_sessions))]
    else:
        session.state.inferred_element_counts.clear()
        script._inference_state = session.state  # before the Script has used its own
    session.uses += 1


def drop_sessions() -> None:
    """Forget shared inference states (after an analyzer error, or in tests)."""
    _sessions.clear()
    _scripts.clear()


def script_for(ctx: AnalysisContext) -> jedi.Script:
    """The jedi Script of this candidate's document (caller holds JEDI_LOCK)."""
    python = ctx.interpreter
    path = str(ctx.document) if ctx.document else str(ctx.workspace / "__completion__.py")
    key = (ctx.code, path, str(ctx.workspace), python, tuple(sorted(ctx.overrides.items())))
    script = _scripts.get(key)
    if script is not None:
        return script
    env = environment_for(python)
    _seed_overrides(ctx, env)
    script = jedi.Script(ctx.code, path=path, project=project_for(ctx.workspace, python),
                         environment=env)
    _attach_session(script, ctx, path, python)
    # Only the newest Script stays valid: parso's diff parser updates the cached tree of this
    # path in place, so an older Script of the same file would silently see the new code.
    _scripts.clear()
    _scripts[key] = script
    return script


# -- position lookups ------------------------------------------------------------------------------
# `Script.infer`/`Script.goto` find the name under the cursor with parso's linear scan of the
# whole tree (about 2 ms per call on a 300-line module, a dozen calls per candidate); the leaf
# lookup below is parso's binary search, then the same inference jedi's API runs.


def name_leaf_at(script: jedi.Script, line: int, column: int) -> Any | None:
    """The name leaf starting at (line, column), or covering it."""
    leaf = script._module_node.get_leaf_for_position((line, column))
    if leaf is None:
        return None
    if leaf.type != "name" or leaf.end_pos <= (line, column):
        nxt = leaf.get_next_leaf()  # at a boundary parso may answer with the leaf before
        if nxt is not None and nxt.type == "name" and nxt.start_pos == (line, column):
            return nxt
        return leaf if leaf.type == "name" and leaf.start_pos <= (line, column) else None
    return leaf


def goto_names(script: jedi.Script, leaf: Any) -> list[Any]:
    """What `Script.goto` finds for this name leaf (jedi's internal names)."""
    script._inference_state.reset_recursion_limitations()
    return list(script._get_module_context().create_name(leaf).goto())


def infer_values(script: jedi.Script, leaf: Any) -> list[Any]:
    """What `Script.infer` finds for this leaf (jedi's internal values)."""
    from jedi.api import helpers

    script._inference_state.reset_recursion_limitations()
    context = script._get_module_context().create_context(leaf)
    return list(helpers.infer(script._inference_state, context, leaf))
