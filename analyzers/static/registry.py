"""Analyzers by name. Modules load on first use, so importing the registry stays cheap (mypy
alone takes a third of a second to import)."""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable

from collabcoder.analyzers.static.base import Analyzer

AnalyzerFactory = Callable[[], Analyzer]

_BUILTIN: dict[str, str] = {
    "syntax": "collabcoder.analyzers.static.syntax:SyntaxAnalyzer",
    "mypy": "collabcoder.analyzers.static.mypy_check:MypyAnalyzer",
    "signature": "collabcoder.analyzers.static.signature:SignatureAnalyzer",
    "hallucination": "collabcoder.analyzers.static.hallucination:HallucinationAnalyzer",
    "tests": "collabcoder.analyzers.static.doctests:TestsAnalyzer",
    "behaviour": "collabcoder.analyzers.static.behaviour:BehaviourAnalyzer",
    "score": "collabcoder.analyzers.static.llm_score:ScoreAnalyzer",
}

# LLMcoder's names, so its configs and habits carry over.
_ALIASES: dict[str, str] = {
    "mypy_analyzer_v1": "mypy",
    "signature_analyzer_v1": "signature",
    "hallucination_analyzer_v1": "hallucination",
    "gpt_score_analyzer_v1": "score",
    "behavior": "behaviour",
}

_factories: dict[str, AnalyzerFactory] = {}
_instances: dict[str, Analyzer] = {}
_lock = threading.Lock()


class UnknownAnalyzerError(ValueError):
    """An analyzer name that is neither registered nor an alias."""

    def __init__(self, name: str) -> None:
        names = available_analyzers()
        close = difflib.get_close_matches(name, [*names, *_ALIASES], n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        super().__init__(
            f"unknown analyzer {name!r}{hint} Valid names: {', '.join(names)} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
        self.name = name
        self.suggestion = close[0] if close else None


def available_analyzers() -> tuple[str, ...]:
    return tuple(sorted({*_BUILTIN, *_factories}))


def canonical_name(name: str) -> str:
    """`mypy_analyzer_v1` -> `mypy`; raises `UnknownAnalyzerError` for anything unknown."""
    key = name.strip()
    key = _ALIASES.get(key, key)
    if key in _BUILTIN or key in _factories:
        return key
    raise UnknownAnalyzerError(name)


def register_analyzer(
    name: str, factory: AnalyzerFactory, aliases: tuple[str, ...] = (), replace: bool = False
) -> None:
    """Add an analyzer (a plugin, a test double); `replace=True` to override a built-in."""
    with _lock:
        if not replace and (name in _BUILTIN or name in _factories or name in _ALIASES):
            raise ValueError(f"analyzer {name!r} is already registered; pass replace=True")
        _factories[name] = factory
        _instances.pop(name, None)
        for alias in aliases:
            _ALIASES[alias] = name


def unregister_analyzer(name: str) -> None:
    """Drop a registered plugin and its aliases; built-ins come back if they were replaced."""
    with _lock:
        _factories.pop(name, None)
        _instances.pop(name, None)
        if name not in _BUILTIN:
            for alias in [a for a, target in _ALIASES.items() if target == name]:
                del _ALIASES[alias]


def get_analyzer(name: str) -> Analyzer:
    """The shared instance for `name` (analyzers keep their caches across calls)."""
    key = canonical_name(name)
    with _lock:
        instance = _instances.get(key)
        if instance is None:
            factory = _factories.get(key)
            if factory is None:
                module_name, _, attr = _BUILTIN[key].partition(":")
                factory = getattr(importlib.import_module(module_name), attr)
            instance = factory()
            _instances[key] = instance
        return instance
