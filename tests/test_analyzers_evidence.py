"""Behavioural evidence (issue 12): the workspace's tests, the docstring's examples and the
document's asserts, run in the real sandbox against the candidate; honest verdict words."""

from __future__ import annotations

from pathlib import Path

import pytest

from collabcoder.analyzers.static import AnalysisContext, AnalyzerResult, run_analyzers_sync
from collabcoder.analyzers.static.examples import prose_examples
from collabcoder.analyzers.static.result import (
    Evidence,
    evidence_first_score,
    evidence_value,
    verdict_words,
)

STATS = '''\
def mean(xs: list[float]) -> float:
    """The arithmetic mean; an empty list raises ValueError.

    >>> mean([1.0, 2.0])
    1.5
    """
    # BODY
    return 0.0


if __name__ == "__main__":
    result = mean([4.0, 6.0])
    assert result == 5.0
'''
TESTS = '''\
import unittest

import pytest
from pkg.stats import mean


def test_mean():
    assert mean([1.0, 3.0]) == 2.0


def test_mean_empty():
    with pytest.raises(ValueError):
        mean([])


@pytest.mark.parametrize("xs,want", [([2.0], 2.0), ([1.0, 2.0, 3.0], 2.0)])
def test_mean_param(xs, want):
    assert mean(xs) == want


def test_with_a_fixture(tmp_path):
    assert mean([1.0]) == 1.0


class MeanCase(unittest.TestCase):
    def test_single(self):
        self.assertEqual(mean([7.0]), 7.0)


def test_unrelated():
    assert 1 + 1 == 2
'''
GOOD = "    if not xs:\n        raise ValueError('empty')\n    return sum(xs) / len(xs)\n"
NO_GUARD = "    return sum(xs) / len(xs)\n"
WRONG = "    return 1.5\n"


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "stats.py").write_text(STATS)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_stats.py").write_text(TESTS)
    return tmp_path


def site(root: Path, completion: str, **kw: object) -> AnalysisContext:
    doc = root / "pkg" / "stats.py"
    text = doc.read_text()
    start = text.index("    # BODY\n")
    end = text.index("    return 0.0\n") + len("    return 0.0\n")
    return AnalysisContext(text[:start], completion, text[end:], document_path=doc,
                           workspace_root=root, **kw)  # type: ignore[arg-type]


def behaviour(ctx: AnalysisContext) -> AnalyzerResult:
    (result,) = run_analyzers_sync(ctx, ["behaviour"])
    return result


def outcomes(result: AnalyzerResult, kind: str) -> dict[str, str]:
    return {row["name"]: row["outcome"] for row in result.details["tests"][kind]}


def test_correct_candidate_passes_tests_examples_and_asserts(workspace: Path) -> None:
    result = behaviour(site(workspace, GOOD))
    assert result.passed and result.kind == "critical", result.message
    assert result.evidence == Evidence("tests", 4, 4, (), result.evidence.parts)  # type: ignore[union-attr]
    kinds = {p.kind: (p.passed, p.total) for p in result.evidence.parts}  # type: ignore[union-attr]
    assert kinds == {"tests": (4, 4), "examples": (1, 1), "asserts": (1, 1)}
    assert outcomes(result, "tests") == {
        "test_mean": "passed", "test_mean_empty": "passed", "test_mean_param": "passed",
        "test_with_a_fixture": "not_run", "MeanCase.test_single": "passed",
    }
    assert verdict_words([result]) == "tests passed 4/4"


def test_each_failing_test_is_reported_with_its_reason(workspace: Path) -> None:
    result = behaviour(site(workspace, NO_GUARD))
    assert not result.passed and result.blocks
    assert outcomes(result, "tests")["test_mean_empty"] == "runtime_error"
    assert outcomes(result, "tests")["test_mean"] == "passed"
    assert result.evidence is not None and result.evidence.failures == (
        "test_mean_empty: ZeroDivisionError: division by zero",
    )
    assert verdict_words([result]) == "failed: test_mean_empty: ZeroDivisionError: division by zero"
    wrong = behaviour(site(workspace, WRONG))
    assert wrong.evidence is not None and wrong.evidence.passed == 0
    assert "test_mean: AssertionError: assert mean([1.0, 3.0]) == 2.0 (line 8)" in (
        wrong.evidence.failures)
    assert evidence_value([result]) > evidence_value([wrong])
    assert evidence_first_score([result], 0.0) > evidence_first_score([wrong], 7.0)


def test_unsaved_buffers_test_file_and_module_stand_in_for_disk(workspace: Path) -> None:
    """A test file that exists only in the editor, and a helper module whose buffer differs
    from the file on disk: both are what the sandbox imports."""
    (workspace / "pkg" / "scale.py").write_text("FACTOR = 1.0\n")
    text = STATS.replace("def mean", "from pkg.scale import FACTOR\n\n\ndef mean", 1)
    (workspace / "pkg" / "stats.py").write_text(text)
    (workspace / "tests" / "test_stats.py").unlink()
    buffers = {
        str(workspace / "tests" / "test_unsaved.py"):
            "from pkg.stats import mean\n\n\ndef test_scaled():\n    assert mean([2.0]) == 4.0\n",
        str(workspace / "pkg" / "scale.py"): "FACTOR = 2.0\n",
    }
    scaled = "    return FACTOR * sum(xs) / len(xs)\n"
    result = behaviour(site(workspace, scaled, overrides=buffers))
    assert outcomes(result, "tests") == {"test_scaled": "passed"}, result.message
    on_disk = behaviour(site(workspace, scaled, overrides={
        k: v for k, v in buffers.items() if k.endswith("test_unsaved.py")}))
    assert outcomes(on_disk, "tests") == {"test_scaled": "runtime_error"}
    assert "assert mean([2.0]) == 4.0" in on_disk.message


def test_the_candidate_not_the_disk_file_is_imported(workspace: Path) -> None:
    # On disk `mean` returns 0.0; the candidate is what the tests must see.
    assert behaviour(site(workspace, GOOD)).passed
    assert (workspace / "pkg" / "stats.py").read_text() == STATS  # nothing written


def test_humaneval_style_examples_and_main_asserts(tmp_path: Path) -> None:
    doc = tmp_path / "fly.py"
    prefix = ('def will_it_fly(q: list[int], w: int) -> bool:\n'
              '    """True if q is a palindrome and its sum is at most w.\n\n'
              '    Examples:\n'
              '    will_it_fly([1, 2], 5) ➞ False\n'
              '    will_it_fly([3, 2, 3], 1) ➞ False\n'
              '    will_it_fly([3, 2, 3], 9) == True\n'
              '    will_it_fly([3], 5) => true\n'
              '    """\n')
    suffix = '\n\nassert will_it_fly([1, 2, 1], 4)\n'
    doc.write_text(prefix + suffix)
    good = "    return q == q[::-1] and sum(q) <= w\n"
    ctx = AnalysisContext(prefix, good, suffix, document_path=doc, workspace_root=tmp_path)
    result = behaviour(ctx)
    assert result.passed, result.message
    kinds = {p.kind: (p.passed, p.total) for p in result.evidence.parts}  # type: ignore[union-attr]
    assert kinds == {"examples": (4, 4), "asserts": (1, 1)}
    assert verdict_words([result]) == "examples passed 4/4"
    bad = AnalysisContext(prefix, "    return sum(q) <= w\n", suffix, document_path=doc,
                          workspace_root=tmp_path)
    failed = behaviour(bad)
    assert not failed.passed
    assert failed.evidence is not None and failed.evidence.kind == "examples"
    assert failed.evidence.failures[0] == "will_it_fly([1, 2], 5) == False: expected False, got True"


def test_prose_example_forms_are_parsed_not_evaluated() -> None:
    doc = ("Examples:\n"
           "    f(1) ➞ 2\n    f('a', 3) == 'aaa'\n    f(5) => [2,3]\n    * f(-1) -> None\n"
           "    f(2) ==> 1 + 1 = 2\n    f(4) should return 16.\n    f(x) => 1\n"
           "    f(__import__('os')) == 1\n    f(1) == \"\"broken\"\n")
    sources = [s.source for s in prose_examples(doc, "f", 10)]
    assert sources == [
        "assert candidate(1) == 2\n", "assert candidate('a', 3) == 'aaa'\n",
        "assert candidate(5) == [2, 3]\n", "assert candidate(-1) == None\n",
        "assert candidate(2) == 2\n", "assert candidate(4) == 16\n",
    ]


def test_without_behaviour_the_verdict_is_static_checks_only(tmp_path: Path) -> None:
    doc = tmp_path / "plain.py"
    doc.write_text("def double(x: int) -> int:\n    pass\n")
    ctx = AnalysisContext("def double(x: int) -> int:\n", "    return 2 * x\n", "",
                          document_path=doc, workspace_root=tmp_path)
    results = run_analyzers_sync(ctx, ["syntax", "mypy", "behaviour"])
    assert all(r.passed for r in results)
    assert results[-1].kind == "info" and results[-1].evidence == Evidence()
    assert verdict_words(results) == "static checks only"


def test_over_budget_it_is_skipped_never_failed(workspace: Path) -> None:
    results = run_analyzers_sync(site(workspace, WRONG), ["behaviour"], budget_s=0.01)
    assert results[0].skipped and not results[0].blocks
    assert verdict_words(results) == "static checks only"


def test_doctest_comparisons_without_output_become_asserts() -> None:
    from collabcoder.analyzers.static.examples import doctest_assert

    assert doctest_assert("f([1]) == 1\n", "") == "assert f([1]) == 1\n"
    assert doctest_assert("f(12, 1)\n", '"21"\n') == "assert f(12, 1) == '21'\n"
    assert doctest_assert("print(f(1))\n", "hello\n") is None  # printed text: doctest's match
