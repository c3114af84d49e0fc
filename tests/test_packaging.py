"""The wheel carries every subpackage and data file (setuptools drops unlisted ones silently)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fixtures.wheel import build_wheel

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"server": "collabcoder/server", "analyzers": "collabcoder/analyzers",
           "training": "collabcoder/training"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _source_files(suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    files = []
    for folder, target in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in suffixes and "__pycache__" not in path.parts:
                files.append((path, f"{target}/{path.relative_to(ROOT / folder).as_posix()}"))
    return files


def test_every_python_module_is_in_the_wheel(wheel_names: set[str]) -> None:
    missing = [src for src, name in _source_files((".py",)) if name not in wheel_names]
    assert not missing, f"not in the wheel (list the package in pyproject.toml): {missing}"


def test_data_files_are_in_the_wheel(wheel_names: set[str]) -> None:
    missing = [src for src, name in _source_files((".json", ".md", ".typed", ".jinja"))
               if name not in wheel_names]
    assert not missing, f"data files not in the wheel (add to package-data): {missing}"


def test_no_generic_top_level_names(wheel_names: set[str]) -> None:
    top = {n.split("/")[0] for n in wheel_names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"collabcoder"}


def test_server_imports_without_torch() -> None:
    """The language server must start without torch when its backend is an HTTP endpoint."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import collabcoder.server.backends.transformers_backend\n"
        "import collabcoder.server.backends.base\n"
        "import collabcoder.analyzers.verdict, collabcoder.analyzers.testcases\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
