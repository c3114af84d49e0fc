"""ruff and mypy over the whole project, the way `make lint` and tests/test_lint.py run them.

mypy cannot follow setuptools' editable import hook (our folders are mapped under
`collabcoder`), so it checks a tree of symlinks named like the installed package instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("server", "analyzers", "training")


def typecheck_tree() -> Path:
    tree = ROOT / "build" / "typecheck"
    pkg = tree / "collabcoder"
    pkg.mkdir(parents=True, exist_ok=True)
    for folder in FOLDERS:
        link = pkg / folder
        if not link.is_symlink():
            link.symlink_to(ROOT / folder, target_is_directory=True)
    return tree


def run_ruff() -> int:
    return subprocess.call([sys.executable, "-m", "ruff", "check", *FOLDERS, "tests", "bench"],
                           cwd=ROOT)


def run_mypy() -> int:
    tree = typecheck_tree()
    return subprocess.call(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(ROOT / "build" / "mypy-cache"), "-p", "collabcoder"],
        cwd=tree,
    )


if __name__ == "__main__":
    sys.exit(run_ruff() or run_mypy())
