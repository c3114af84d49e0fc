"""An agents folder whose weights do not decode (cut short, or garbage) once gave a raw
safetensors error that named no file, and a traceback in the log on every request. Now the
status and `collab.getStats` name the damaged file, and the log has no traceback.

The real server over stdio loads a real agents folder (tiny models) with a real damaged file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures.lsp_helpers import inline, open_doc, recorder, running_server, stats, wait_for
from fixtures.tiny_agents import make_agents_folder

from collabcoder.server.backends.base import BackendError
from collabcoder.server.backends.lora import check_weights


@pytest.fixture(scope="module")
def agents_template(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aux: a full copy of the tiny model; main: a LoRA adapter on it."""
    return make_agents_folder(tiny_model_dir, tmp_path_factory.mktemp("agents"), num_turns=1)


def damage(folder: Path, how: str) -> Path:
    """Cut the aux model's weights in half, or replace the main adapter with garbage."""
    if how == "truncated":
        victim = folder / "aux" / "model.safetensors"
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    else:
        victim = folder / "main" / "adapter_model.safetensors"
        victim.write_bytes(b"not a safetensors file " * 8)
    return victim


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_check_weights_names_the_damaged_file(agents_template: Path, tmp_path: Path,
                                              how: str) -> None:
    folder = tmp_path / "agents"
    shutil.copytree(agents_template, folder)
    victim = damage(folder, how)
    check_weights(folder / ("main" if how == "truncated" else "aux"))  # the intact one passes
    with pytest.raises(BackendError, match="cannot be decoded") as caught:
        check_weights(victim.parent)
    assert str(victim) in str(caught.value)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
async def test_the_server_names_the_damaged_weights_file(agents_template: Path, tmp_path: Path,
                                                         how: str) -> None:
    folder = tmp_path / "agents"
    shutil.copytree(agents_template, folder)
    victim = damage(folder, how)
    log_file = tmp_path / "server.log"
    options = {"backend": "transformers", "model": str(folder), "analyzers": [],
               "maxTokens": 4, "debounceMs": 0, "latencyBudgetMs": 30_000}
    async with running_server(options, tmp_path, ["--log-file", str(log_file)]) as client:
        rec = recorder(client)
        await wait_for(lambda: bool(rec.status) and bool(rec.status[-1]["lastError"]),
                       timeout=60)
        assert str(victim) in rec.status[-1]["lastError"]
        uri = (tmp_path / "team.py").as_uri()
        open_doc(client, uri, "def median(xs):\n    \n")
        assert await inline(client, uri, 1, 4, automatic=False) == []
        s = await stats(client)
    assert s["lastErrors"] and all(str(victim) in e for e in s["lastErrors"]), s["lastErrors"]
    logged = log_file.read_text()
    assert "Traceback" not in logged, logged[-3000:]
    assert str(victim) in logged
