"""Signature and hallucination analyzers against real jedi: wrong calls and made-up names are
caught, with the real signature / closest real names; uncertain cases are left alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from collabcoder.analyzers.static import AnalysisContext, AnalyzerResult
from collabcoder.analyzers.static.hallucination import HallucinationAnalyzer, suggest
from collabcoder.analyzers.static.signature import SignatureAnalyzer, bind_problems, has_default

APP = """\
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import helpers


class Color(Enum):
    RED = 1
    GREEN = 2


@dataclass
class Item:
    name: str
    price: float

    def total(self, quantity: int, discount: float = 0.0) -> float:
        return self.price * quantity * (1 - discount)


class Point(NamedTuple):
    x: int
    y: int = 0


class Point3(Point):
    pass


class Proxy:
    def fetch(self, key: str) -> str:
        return key

    def __getattr__(self, name: str) -> str:
        return name


def configure(path: str, *, verbose: bool, retries: int = 3) -> None:
    pass


def deco(func):
    return func


@deco
def decorated(a, b):
    return a


def untyped(thing):
    return thing


# CURSOR
"""
HELPERS = "def helper() -> int:\n    return 1\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jedi-ws")
    (root / "app.py").write_text(APP)
    (root / "helpers.py").write_text(HELPERS)
    return root


def make_ctx(root: Path, completion: str, **kw: Any) -> AnalysisContext:
    return AnalysisContext(
        APP,
        completion,
        "\nprint('end')\n",
        document_path=root / "app.py",
        workspace_root=root,
        **kw,
    )


def signature(root: Path, completion: str, **kw: Any) -> AnalyzerResult:
    return SignatureAnalyzer().check(make_ctx(root, completion, **kw), time.monotonic() + 60)


def hallucination(root: Path, completion: str, **kw: Any) -> AnalyzerResult:
    return HallucinationAnalyzer().check(make_ctx(root, completion, **kw), time.monotonic() + 60)


# -- signature -----------------------------------------------------------------------------------


def test_matching_calls_pass(workspace: Path) -> None:
    result = signature(
        workspace,
        (
            "item = Item('pen', 1.5)\n"
            "cost = item.total(3, discount=0.1)\n"
            "configure('x', verbose=True)\n"
            "parts = re.split(r',', 'a,b', maxsplit=1)\n"
            "r = range(1, 10, 2)\n"
        ),
    )
    assert result.passed, result.message
    assert result.details["checked"] == 5


def test_too_many_positional_arguments(workspace: Path) -> None:
    result = signature(workspace, "item = Item('pen', 1.5)\ncost = item.total(3, 0.1, True)\n")
    assert not result.passed and result.kind == "critical"
    (diag,) = result.diagnostics
    assert (diag.line, diag.column) == (2, 8)
    assert "takes from 1 to 2 positional arguments but 3 were given" in diag.message
    assert "total(quantity: int, discount: float=0.0) -> float" in diag.message


def test_unknown_keyword_and_missing_arguments(workspace: Path) -> None:
    result = signature(
        workspace,
        ("item = Item('pen')\nconfigure('x', verbose=True, colour='red')\nconfigure('y')\n"),
    )
    messages = [d.message for d in result.diagnostics]
    assert len(messages) == 3, messages
    assert "missing 1 required positional argument: 'price'" in messages[0]
    assert "unexpected keyword argument 'colour'" in messages[1]
    assert "missing 1 required keyword-only argument: 'verbose'" in messages[2]


def test_overloads_fail_only_when_none_accepts(workspace: Path) -> None:
    assert signature(workspace, "r = range(10)\ns = range(1, 10)\n").passed
    result = signature(workspace, "r = range(1, 2, 3, 4)\n")
    assert not result.passed and "Signatures:" in result.message


def test_uncertain_calls_are_skipped(workspace: Path) -> None:
    result = signature(
        workspace,
        (
            "args = (1, 2)\n"
            "item = Item(*args)\n"  # star-args at the call site
            "decorated(1)\n"  # unknown decorator may change the signature
            "p = Point(1, 2)\n"  # NamedTuple: jedi's signature is typing's, not the class's
        "q = Point3(1, 2)\n"  # ... also through a base class
            "x = untyped(1)(2, 3, 4)\n"  # unknown callee
        ),
    )
    assert result.passed, result.message


def test_only_the_completions_calls_are_checked(workspace: Path) -> None:
    ctx = AnalysisContext(
        "def f(a: int) -> int:\n    return a\n\nf(1, 2)\n",
        "f(1)\n",
        "f(3, 4)\n",
        document_path=workspace / "other.py",
        workspace_root=workspace,
    )
    assert SignatureAnalyzer().check(ctx, time.monotonic() + 60).passed


def test_bind_rules() -> None:
    from collabcoder.analyzers.static.signature import Param

    params = [Param("a", "POSITIONAL_ONLY", False), Param("b", "POSITIONAL_OR_KEYWORD", True)]
    assert bind_problems(params, 1, ("b",)) == []
    assert bind_problems(params, 2, ("b",)) == ["got multiple values for argument 'b'"]
    assert "positional-only" in bind_problems(params, 0, ("a",))[0]
    assert bind_problems([*params, Param("kw", "VAR_KEYWORD", False)], 1, ("z",)) == []
    assert has_default('reason: str="a=b"') and has_default("x: int=0")
    assert not has_default("x: Literal['a=b']") and not has_default("x: int")


# -- hallucination -------------------------------------------------------------------------------


def test_real_names_pass(workspace: Path) -> None:
    result = hallucination(
        workspace,
        (
            "item = Item('pen', 1.5)\n"
            "name = item.name.upper().strip()\n"
            "joined = os.path.join('a', name)\n"
            "color = Color.RED.value\n"
            "value = Proxy().anything_at_all\n"  # __getattr__: any name may exist
            "def use(thing):\n"
            "    return thing.whatever\n"  # unknown owner (untyped parameter): no opinion
        ),
    )
    assert result.passed, result.message


def test_made_up_attributes_are_flagged_with_suggestions(workspace: Path) -> None:
    result = hallucination(
        workspace,
        (
            "path = os.path.joinn('a', 'b')\n"
            "item = Item('pen', 1.5)\n"
            "cost = item.pricee * 2\n"
            "shout = 'abc'.upper().lowerr()\n"
            "color = Color.PURPLE\n"
        ),
    )
    assert not result.passed and result.kind == "critical"
    by_name = result.details["suggestions"]
    assert by_name["joinn"][0] == "join"
    assert by_name["pricee"][0] == "price"
    assert by_name["lowerr"][0] == "lower"
    assert "PURPLE" in by_name
    assert all(len(v) <= 5 for v in by_name.values())
    first = result.diagnostics[0]
    assert (first.line, first.column, first.end_column) == (1, 16, 21)
    assert "module 'os.path' has no attribute 'joinn'; did you mean 'join'" in result.message


def test_typo_on_dynamic_owner_is_flagged_only_when_near_a_real_name(workspace: Path) -> None:
    result = hallucination(workspace, "a = Proxy().fetchh('k')\nb = Proxy().unrelated_thing\n")
    (diag,) = result.diagnostics
    assert "fetchh" in diag.message and "looks like a typo" in diag.message


def test_made_up_import_and_undefined_name(workspace: Path) -> None:
    result = hallucination(workspace, "from collections import OrderedDictt\nn = totl + 1\n")
    text = result.message
    assert "module 'collections' has no name 'OrderedDictt'; did you mean 'OrderedDict'" in text
    assert "name 'totl' is not defined" in text


def test_attributes_assigned_somewhere_are_trusted(workspace: Path) -> None:
    result = hallucination(workspace, "item = Item('a', 1.0)\nitem.note = 'x'\nprint(item.note)\n")
    assert result.passed, result.message


def test_suggestions_are_capped() -> None:
    names = {f"value_{i}" for i in range(200)}
    assert len(suggest("value_", names)) == 5
    assert suggest("zzz", names) == ()


# -- unsaved buffers -----------------------------------------------------------------------------


def test_unsaved_buffer_of_another_module_is_seen(workspace: Path) -> None:
    completion = "text = helpers.extra(1, 2)\n"
    assert "has no attribute 'extra'" in hallucination(workspace, completion).message
    buffer = HELPERS + "\n\ndef extra(x: int) -> str:\n    return str(x)\n"
    overrides = {str(workspace / "helpers.py"): buffer}
    assert hallucination(workspace, completion, overrides=overrides).passed
    wrong_call = signature(workspace, completion, overrides=overrides)
    assert "extra(x: int) -> str" in wrong_call.message
    # Closed buffer: jedi reads the disk again.
    assert not hallucination(workspace, completion).passed


async def test_concurrent_candidates_do_not_mix(workspace: Path) -> None:
    """The loop judges several candidates at once: jedi's and mypy's shared state must not leak
    one candidate's code into another's verdict."""
    import asyncio

    from collabcoder.analyzers.static import run_analyzers

    good = "item = Item('pen', 1.5)\ncost = item.total(2)\n"
    bad_attr = "item = Item('pen', 1.5)\ncost = item.totl(2)\n"
    bad_call = "item = Item('pen', 1.5)\ncost = item.total(2, 0.5, 1)\n"
    names = ["syntax", "mypy", "signature", "hallucination"]
    runs = await asyncio.gather(*(
        run_analyzers(make_ctx(workspace, c, time_budget_s=60), names)
        for c in (good, bad_attr, bad_call, good)
    ))
    verdicts = [{r.name: r.passed for r in results} for results in runs]
    assert all(not r.infra_error for results in runs for r in results)
    assert verdicts[0] == verdicts[3] == dict.fromkeys(names, True)
    assert verdicts[1] == {"syntax": True, "mypy": False, "signature": True,
                           "hallucination": False}
    assert verdicts[2] == {"syntax": True, "mypy": False, "signature": False,
                           "hallucination": True}
