"""The user's interpreter decides what exists: a package installed only in another environment is
seen by mypy and jedi when that environment's python is given, and only then."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collabcoder.analyzers.static import AnalysisContext, run_analyzers
from collabcoder.analyzers.static.hallucination import HallucinationAnalyzer
from collabcoder.analyzers.static.mypy_check import MypyAnalyzer
from collabcoder.analyzers.static.signature import SignatureAnalyzer


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv with two packages of its own: `tinypkg` (typed) and `untypedpkg` (no py.typed)."""
    root = tmp_path_factory.mktemp("user-env")
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
        check=True,
    )
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "tinypkg").mkdir(parents=True)
    (site / "tinypkg" / "__init__.py").write_text(
        'def greet(name: str, *, loud: bool = False) -> str:\n    return "hi " + name\n'
    )
    (site / "tinypkg" / "py.typed").write_text("")
    (site / "untypedpkg").mkdir()
    (site / "untypedpkg" / "__init__.py").write_text("def thing(x):\n    return x\n")
    return str(python)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("env-ws")
    (root / "main.py").write_text("from __future__ import annotations\n\n")
    return root


def make_ctx(root: Path, completion: str, python: str | None) -> AnalysisContext:
    return AnalysisContext(
        "from __future__ import annotations\n\n",
        completion,
        "",
        document_path=root / "main.py",
        workspace_root=root,
        python_executable=python,
    )


def test_mypy_resolves_imports_in_the_given_environment(workspace: Path, venv_python: str) -> None:
    completion = 'import tinypkg\n\ncount: int = tinypkg.greet("ada")\n'
    deadline = time.monotonic() + 60
    in_env = MypyAnalyzer().check(make_ctx(workspace, completion, venv_python), deadline)
    # Resolved: mypy knows greet returns str.
    assert [d.code for d in in_env.diagnostics] == ["assignment"], in_env.message
    elsewhere = MypyAnalyzer().check(make_ctx(workspace, completion, None), deadline)
    assert "import-not-found" in [d.code for d in elsewhere.diagnostics]


def test_missing_stubs_are_info_not_errors(workspace: Path, venv_python: str) -> None:
    ctx = make_ctx(workspace, "import untypedpkg\n\nvalue = untypedpkg.thing(1)\n", venv_python)
    result = MypyAnalyzer().check(ctx, time.monotonic() + 60)
    assert result.passed, result.message
    (note,) = result.diagnostics
    assert note.severity == "note" and note.code == "import-untyped"
    assert "untypedpkg" in result.details["environment_notes"][0]


def test_jedi_sees_the_given_environment(workspace: Path, venv_python: str) -> None:
    completion = 'import tinypkg\n\ntext = tinypkg.greett("ada")\nmore = tinypkg.greet("a", "b")\n'
    deadline = time.monotonic() + 60
    made_up = HallucinationAnalyzer().check(make_ctx(workspace, completion, venv_python), deadline)
    assert made_up.details["suggestions"] == {"greett": ["greet"]}
    wrong = SignatureAnalyzer().check(make_ctx(workspace, completion, venv_python), deadline)
    assert "greet(name: str, *, loud: bool=False) -> str" in wrong.message
    # Without the environment the module is unknown: no opinion rather than a false alarm.
    assert HallucinationAnalyzer().check(make_ctx(workspace, completion, None), deadline).passed


async def test_full_pass_in_the_users_environment(workspace: Path, venv_python: str) -> None:
    ctx = make_ctx(
        workspace, 'import tinypkg\n\nprint(tinypkg.greet("ada", loud=True))\n', venv_python
    )
    results = await run_analyzers(
        ctx, ["syntax", "mypy", "signature", "hallucination"], budget_s=60
    )
    assert [r.name for r in results] == ["syntax", "mypy", "signature", "hallucination"]
    assert all(r.passed and not r.infra_error for r in results), [r.message for r in results]


def test_unusable_interpreter_is_an_infra_result(workspace: Path, tmp_path: Path) -> None:
    ctx = make_ctx(workspace, "x = 1\nprint(x.real)\n", str(tmp_path / "no" / "python"))
    results = asyncio.run(run_analyzers(ctx, ["mypy", "hallucination"], budget_s=30))
    assert [r.name for r in results] == ["mypy", "hallucination"]
    for result in results:
        assert result.infra_error and result.passed
        assert "interpreter" in result.message and "crashed" not in result.message
