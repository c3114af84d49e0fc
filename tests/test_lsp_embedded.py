"""End to end with the embedded default model (SmolLM2-135M-Instruct, in-process, CPU): the
configuration a user gets without setting anything but a few tokens' budget. The default runs
the packaged GGUF on llama.cpp, and the server process holds no torch; the transformers backend
(for safetensors checkpoints) serves the same model when asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.lsp_helpers import (
    inline,
    open_doc,
    recorder,
    running_server,
    stats,
    text_of,
    wait_for,
)
from pytest_lsp import LanguageClient


def server_libraries(client: LanguageClient) -> str:
    """The shared objects mapped into the server process (Linux)."""
    process = client._server
    assert process is not None
    return Path(f"/proc/{process.pid}/maps").read_text()


async def complete_a_line(client: LanguageClient, tmp_path: Path, backend: str) -> None:
    rec = recorder(client)
    await wait_for(lambda: bool(rec.status) and rec.status[-1]["model"]
                   == "smollm2-135m-instruct", timeout=60)
    uri = (tmp_path / "add.py").as_uri()
    open_doc(client, uri, "def add(a, b):\n    return a\n")
    items = await inline(client, uri, 1, 12)
    s = await stats(client)
    assert s["errors"] == 0, s["lastErrors"]
    assert s["timings"][-1]["analyzersMs"] > 0  # one analyzer round fitted the budget
    assert items and text_of(items[0]).strip().startswith("+")  # `return a + b`
    assert rec.status[-1]["state"] == "idle" and rec.status[-1]["backend"] == backend


@pytest.mark.slow
async def test_the_embedded_default_is_llamacpp_and_completes_a_line_without_torch(
    tmp_path: Path,
) -> None:
    options = {"analyzers": ["syntax"], "maxTokens": 32, "debounceMs": 0,
               "latencyBudgetMs": 120_000}  # a loaded 2-core machine is slow; the budget is not
    async with running_server(options, tmp_path) as client:
        await complete_a_line(client, tmp_path, "llamacpp")
        libraries = server_libraries(client)
        assert "libllama" in libraries
        assert "libtorch" not in libraries  # the llama.cpp path never imports torch


@pytest.mark.slow
async def test_the_transformers_backend_still_serves_the_embedded_model(tmp_path: Path) -> None:
    options = {"backend": "transformers", "analyzers": ["syntax"], "maxTokens": 32,
               "debounceMs": 0, "latencyBudgetMs": 120_000}
    async with running_server(options, tmp_path) as client:
        await complete_a_line(client, tmp_path, "transformers")
