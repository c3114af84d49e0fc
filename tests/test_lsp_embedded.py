"""End to end with the embedded default model (SmolLM2-135M-Instruct, in-process, CPU): the
configuration a user gets without setting anything but a few tokens' budget. The default runs
the packaged GGUF on llama.cpp, and the server process holds no torch; the transformers backend
(for safetensors checkpoints) serves the same model when asked for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fixtures.lsp_helpers import (
    edit,
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


async def backend_counters(client: LanguageClient) -> dict[str, int]:
    """llama.cpp's counters once no generation runs (they are updated when one ends)."""
    for _ in range(100):
        counters = (await stats(client))["backend"]
        if counters["active"] == 0:
            return dict(counters)
        await asyncio.sleep(0.05)
    raise AssertionError(f"a generation is still running: {counters}")


@pytest.mark.slow
async def test_typing_in_a_function_reuses_the_kv_cache(tmp_path: Path) -> None:
    """The prompt keeps what did not change in front: typing on a line evaluates only the new
    tokens, and llama.cpp takes the rest of the prompt from its KV cache."""
    options = {"analyzers": ["syntax"], "maxTokens": 8, "debounceMs": 0,
               "latencyBudgetMs": 120_000}  # fmt: skip
    async with running_server(options, tmp_path) as client:
        uri = (tmp_path / "shop.py").as_uri()
        head = "".join(f"def price_{i}(x: float) -> float:\n    return x * {i}\n\n\n"
                       for i in range(8))  # fmt: skip
        open_doc(client, uri, head + "def total(items: list[float]) -> float:\n    \n")
        line = head.count("\n") + 1
        edit(client, uri, (line, 4), (line, 4), "ret")
        await inline(client, uri, line, 7, automatic=True)
        first = await backend_counters(client)
        edit(client, uri, (line, 7), (line, 7), "urn zzq")  # text no suggestion predicted
        await inline(client, uri, line, 14, automatic=True)
        second = await backend_counters(client)
        evaluated = second["prompt_evaluated"] - first["prompt_evaluated"]
        reused = second["prompt_reused"] - first["prompt_reused"]
        assert second["started"] == first["started"] + 1  # the model ran, no cache hit
        assert first["prompt_evaluated"] > 150  # the whole document once
        assert 0 < evaluated <= 12 and reused >= 150, (evaluated, reused)
