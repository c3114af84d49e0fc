"""The mypy analyzer against real mypy: warm in-process checks, completion-relative positions,
the workspace's config, unsaved buffers of other files, files saved between checks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from collabcoder.analyzers.static import AnalysisContext, AnalyzerResult
from collabcoder.analyzers.static.mypy_check import MypyAnalyzer, find_mypy_config

APP = '''\
"""A small shop module."""
from __future__ import annotations

from dataclasses import dataclass

import helpers


@dataclass
class Item:
    name: str
    price: float

    def total(self, quantity: int, discount: float = 0.0) -> float:
        return self.price * quantity * (1 - discount)


def cheapest(items: list[Item]) -> Item:
    return min(items, key=lambda i: i.price)


broken: int = "pre-existing error, not the completion's"

# CURSOR


def main() -> None:
    print(cheapest([Item("a", 1.0)]), helpers.VERSION)
'''
HELPERS = 'VERSION = "1.0"\n\n\ndef helper() -> int:\n    return 1\n'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mypy-ws")
    (root / "app.py").write_text(APP)
    (root / "helpers.py").write_text(HELPERS)
    return root


def make_ctx(root: Path, completion: str, doc: str = "app.py", **kw: Any) -> AnalysisContext:
    text = APP if doc == "app.py" else (root / doc).read_text()
    cut = text.index("# CURSOR\n") + len("# CURSOR\n")
    return AnalysisContext(
        text[:cut], completion, text[cut:], document_path=root / doc, workspace_root=root, **kw
    )


def check(ctx: AnalysisContext) -> AnalyzerResult:
    return MypyAnalyzer().check(ctx, time.monotonic() + 60)


def test_valid_completion_passes_and_prefix_errors_are_ignored(workspace: Path) -> None:
    result = check(
        make_ctx(workspace, "def double(item: Item) -> float:\n    return item.total(2)\n")
    )
    assert result.passed, result.message
    assert result.kind == "critical" and not result.diagnostics


def test_type_error_reported_at_completion_relative_position(workspace: Path) -> None:
    result = check(
        make_ctx(
            workspace, "def label(item: Item) -> int:\n    name: int = item.name\n    return name\n"
        )
    )
    assert not result.passed
    (diag,) = result.diagnostics
    assert (diag.line, diag.column) == (2, 17)  # `item.name` on the completion's 2nd line
    assert diag.code == "assignment" and diag.end_line == 2 and diag.end_column == 26
    assert result.message.startswith("The completion you provided resulted in the following")
    assert 'expression has type "str", variable has type "int"' in result.message
    assert result.score < 1.0


def test_first_line_columns_are_relative_to_the_cursor(workspace: Path) -> None:
    text = APP.replace("# CURSOR\n", "# CURSOR\nvalue: int = ")
    cut = text.index("value: int = ") + len("value: int = ")
    ctx = AnalysisContext(
        text[:cut],
        "cheapest([]).name\n",
        text[cut:],
        document_path=workspace / "app.py",
        workspace_root=workspace,
    )
    (diag,) = check(ctx).diagnostics
    assert (diag.line, diag.column) == (1, 1)


def test_checks_are_warm(workspace: Path) -> None:
    check(make_ctx(workspace, "x = 1\n"))
    started = time.perf_counter()
    for i in range(3):
        check(make_ctx(workspace, f"y{i}: str = {i}\n"))
    # Warm fine-grained updates: tens of ms each; a mypy process takes ~1 s.
    assert (time.perf_counter() - started) / 3 < 0.5


def test_unsaved_buffer_of_another_module_is_seen(workspace: Path) -> None:
    completion = "extra_value: str = helpers.extra(1)\n"
    without = check(make_ctx(workspace, completion))
    assert not without.passed and 'has no attribute "extra"' in without.message
    buffer = HELPERS + "\n\ndef extra(x: int) -> str:\n    return str(x)\n"
    overrides = {str(workspace / "helpers.py"): buffer}
    assert check(make_ctx(workspace, completion, overrides=overrides)).passed
    # Buffer closed: back to the file on disk.
    assert not check(make_ctx(workspace, completion)).passed


def test_file_saved_between_checks_is_reread(workspace: Path) -> None:
    (workspace / "helpers2.py").write_text("def f() -> int:\n    return 1\n")
    completion = "import helpers2\nz: str = helpers2.f()\n"
    assert not check(make_ctx(workspace, completion)).passed
    time.sleep(0.01)  # a distinct mtime
    (workspace / "helpers2.py").write_text("def f() -> str:\n    return '1'\n")
    assert check(make_ctx(workspace, completion)).passed


def test_untitled_document_resolves_workspace_imports(workspace: Path) -> None:
    ctx = AnalysisContext(
        "import helpers\n", "n: str = helpers.helper()\n", "", workspace_root=workspace
    )
    result = check(ctx)
    assert not result.passed and 'expression has type "int"' in result.message


def test_missing_module_imported_by_completion_fails(workspace: Path) -> None:
    result = check(make_ctx(workspace, "import no_such_module_xyz\n"))
    assert not result.passed
    assert "not installed in the project's environment" in result.message


def test_workspace_config_is_honoured(tmp_path: Path, workspace: Path) -> None:
    completion = "def untyped(x):\n    return x\n"
    assert check(make_ctx(workspace, completion)).passed
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "mypy.ini").write_text("[mypy]\ndisallow_untyped_defs = True\n")
    (strict / "app.py").write_text(APP)
    (strict / "helpers.py").write_text(HELPERS)
    result = check(make_ctx(strict, completion))
    assert not result.passed
    assert result.diagnostics[0].code == "no-untyped-def"


def test_find_config_prefers_nearest_and_skips_foreign_sections(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.mypy]\nstrict = true\n")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "setup.cfg").write_text("[flake8]\nmax-line-length = 100\n")  # not a mypy config
    doc = pkg / "mod.py"
    assert find_mypy_config(doc, tmp_path) == tmp_path / "pyproject.toml"
    (pkg / "mypy.ini").write_text("[mypy]\n")
    assert find_mypy_config(doc, tmp_path) == pkg / "mypy.ini"
    assert find_mypy_config(None, pkg) == pkg / "mypy.ini"


def test_bodies_the_completion_cannot_see_are_elided_in_place() -> None:
    from collabcoder.analyzers.static.mypy_check import elide_bodies
    from collabcoder.analyzers.static.parsing import parse_code

    code = ("class A:\n    def __init__(self) -> None:\n        self.x = 1\n\n"
            "    def get(self) -> int:\n        y = self.x\n        return y\n\n"
            "def f() -> int:\n    return 1\n\n"
            "def g() -> None:\n    pass  # the completion is here\n\n"
            "def h(): return 2\n")
    doc = parse_code(code)
    assert doc is not None
    out = elide_bodies(doc, range(13, 14))
    assert out.count("\n") == code.count("\n")  # positions do not move
    assert "self.x = 1" in out  # declares an attribute: kept
    assert "y = self.x" not in out and "        raise NotImplementedError\n" in out  # A.get
    assert "    return 1" not in out  # f: elided
    assert "pass  # the completion is here" in out  # g: holds the completion
    assert "def h(): return 2" in out  # one-line body: left alone
    compile(out, "<elided>", "exec")


# -- errors the completion causes outside its own lines (issue 12) --------------------------------

AREA = 'def area_of_circle(radius: float) -> float:\n    """The area of a circle."""\n    '


def doc_ctx(root: Path, name: str, prefix: str, completion: str, suffix: str) -> AnalysisContext:
    """A document of its own in the workspace (on disk without the completion)."""
    (root / name).write_text(prefix + suffix)
    return AnalysisContext(prefix, completion, suffix, document_path=root / name,
                           workspace_root=root)


def test_missing_return_at_the_def_counts_against_a_body_completion(workspace: Path) -> None:
    result = check(doc_ctx(workspace, "area.py", AREA, "# This is the default behavior.\n", ""))
    assert not result.passed
    assert "Missing return statement" in result.message and "line 1" in result.message
    assert result.diagnostics[0].code == "empty-body" and result.diagnostics[0].line == 1
    one_line = check(doc_ctx(workspace, "area.py", AREA, "x = radius * 2\n", ""))
    assert not one_line.passed and one_line.diagnostics[0].code == "return"
    good = check(doc_ctx(workspace, "area.py", AREA, "return 3.14159 * radius**2\n", ""))
    assert good.passed, good.message


def test_one_line_in_an_unfinished_body_is_not_blamed_for_the_missing_return(
    workspace: Path,
) -> None:
    prefix = "def mean(xs: list[float]) -> float:\n    total = sum(xs)\n    "
    result = check(doc_ctx(workspace, "mean.py", prefix, "count = len(xs)\n", "\n"))
    assert result.passed, result.message


def test_type_error_at_a_call_site_below_counts(workspace: Path) -> None:
    suffix = "\n\ndef main() -> None:\n    print(scale(2))\n"
    bad = check(doc_ctx(workspace, "calls.py", "", "def scale(x: str) -> str:\n    return x\n",
                        suffix))
    assert not bad.passed
    assert 'Argument 1 to "scale" has incompatible type "int"' in bad.message
    assert "reported at line 6" in bad.message
    good = check(doc_ctx(workspace, "calls.py", "", "def scale(x: int) -> int:\n    return x\n",
                         suffix))
    assert good.passed, good.message


def test_a_name_the_completion_renames_counts_where_it_is_used(workspace: Path) -> None:
    # The cursor is inside the name of a def: the completion makes `mean` `mean_value`, and the
    # call below now uses a name that is not defined.
    suffix = "(xs: list[float]) -> float:\n    return sum(xs)\n\n\nprint(mean([1.0]))\n"
    result = check(doc_ctx(workspace, "names.py", "def mean", "_value", suffix))
    assert not result.passed
    assert 'Name "mean" is not defined' in result.message
    assert "caused by the completion" in result.message


def test_errors_below_that_were_there_before_do_not_count(workspace: Path) -> None:
    suffix = "\n\nbad: int = 'not an int'\n\n\ndef later() -> int:\n    return 'x'\n"
    result = check(doc_ctx(workspace, "before.py", "", "def a() -> int:\n    return 1\n\n\n"
                           "def b() -> int:\n    return a()\n", suffix))
    assert result.passed, result.message
