"""Shared fixtures: a tiny local model and a real OpenAI-compatible server serving it."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer, 64-wide Qwen2 with a tokenizer and chat template (built once)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@dataclass
class OpenAIServerProcess:
    base_url: str  # ends in /v1
    api_key: str
    model: str  # the served name; "tiny-qwen2.5-coder" is served too, for FIM
    process: subprocess.Popen[str]
    log_path: Path

    def stats(self) -> dict[str, Any]:
        """The server's /stats: its request counters and the backend's generation counters."""
        url = self.base_url.removesuffix("/v1") + "/stats"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(req, timeout=10) as reply:
            data: dict[str, Any] = json.load(reply)
            return data

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it to exit (killed after 10 s); its exit status."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_openai_server(
    model: Path | str,
    log_dir: Path,
    names: tuple[str, ...] = ("tiny", "tiny-qwen2.5-coder"),
    extra: tuple[str, ...] = ("--dtype", "float32"),
) -> OpenAIServerProcess:
    """`python -m collabcoder.server.openai_server` on 127.0.0.1 (a free port) serving `model`
    (the tiny one by default) with an API key as `names`; returns once it prints its URL, which
    it does once it listens."""
    api_key = "test-key-5f2c"
    log_path = log_dir / "server.log"
    cmd = [
        sys.executable, "-m", "collabcoder.server.openai_server", "--model", str(model),
        *(arg for name in names for arg in ("--served-model-name", name)),
        "--host", "127.0.0.1", "--port", "0", *extra,
    ]  # fmt: skip
    env = {**os.environ, "COLLABCODER_API_KEY": api_key, "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:  # a thread, so the wait below can time out
        for line in iter(stdout.readline, ""):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        # The server prints its URL once it listens, and it loads the model before that.
        line = lines.get(timeout=120)
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, f"unexpected first line from the server: {line!r}"
    except (queue.Empty, AssertionError):
        proc.kill()
        raise RuntimeError(
            f"openai_server did not start:\n{log_path.read_text()[-3000:]}"
        ) from None
    return OpenAIServerProcess(match.group(1), api_key, names[0], proc, log_path)


@pytest.fixture(scope="session")
def openai_server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenAIServerProcess]:
    """The tiny model behind our OpenAI-compatible server (`start_openai_server`), shared by
    the session and torn down (SIGTERM) at its end."""
    server = start_openai_server(tiny_model_dir, tmp_path_factory.mktemp("openai-server"))
    yield server
    server.stop()
