"""Our OpenAI-compatible server over real HTTP: the `openai_server` fixture (conftest) serves the
tiny model from a subprocess; requests go through httpx or, where the test needs to hang up at a
chosen moment, a raw socket."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import OpenAIServerProcess, start_openai_server

from collabcoder.server.openai_server import SERVE_EXTRA_MISSING, main

PROMPT = "def add(a, b):\n"  # greedy on it never emits EOS: max_tokens bounds the work


def client(server: OpenAIServerProcess, key: str | None = "") -> httpx.Client:
    """A client at the server's root; `key=""` uses the server's key, None sends none."""
    key = server.api_key if key == "" else key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.base_url.removesuffix("/v1"), headers=headers, timeout=30)


def wait_for(
    server: OpenAIServerProcess, check: Callable[[dict[str, Any]], bool], timeout_s: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = server.stats()
        if check(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def test_health_needs_no_key_and_the_api_needs_the_right_one(
    openai_server: OpenAIServerProcess,
) -> None:
    with client(openai_server, key=None) as http:
        assert http.get("/health").json() == {"status": "ok"}
        missing = http.get("/v1/models")
    with client(openai_server, key="sk-wrong") as http:
        wrong = http.post("/v1/chat/completions", json={"model": "tiny", "messages": []})
    for reply in (missing, wrong):
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.json()["error"] == {
            "message": "invalid or missing API key",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    assert "sk-wrong" not in wrong.text


def test_models_lists_the_served_names(openai_server: OpenAIServerProcess) -> None:
    with client(openai_server) as http:
        listing = http.get("/v1/models").json()
        card = http.get("/v1/models/tiny").json()
        unknown = http.get("/v1/models/org/gpt-17")
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["tiny", "tiny-qwen2.5-coder"]
    assert card == {**listing["data"][0], "object": "model", "owned_by": "collabcoder"}
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert "'org/gpt-17'" in unknown.json()["error"]["message"]


def test_bad_requests_get_openai_shaped_errors_that_name_the_problem(
    openai_server: OpenAIServerProcess,
) -> None:
    with client(openai_server) as http:
        not_json = http.post("/v1/chat/completions", content=b'{"model": "tiny",')
        not_object = http.post("/v1/completions", json=["tiny"])
        bad_stop = http.post("/v1/completions", json={"model": "tiny", "prompt": "x", "stop": [1]})
        unknown_model = http.post("/v1/completions", json={"model": "gpt-17", "prompt": "x"})
        wrong_method = http.get("/v1/chat/completions")
        no_route = http.post("/v1/embeddings", json={})
    error = not_json.json()["error"]
    assert not_json.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["message"].startswith("the request body is not JSON: ")
    assert "line 1 column 18" in error["message"]
    assert not_object.status_code == 400 and "JSON object" in not_object.json()["error"]["message"]
    assert bad_stop.status_code == 400 and bad_stop.json()["error"]["param"] == "stop"
    assert unknown_model.status_code == 404
    assert (
        "this server serves: tiny, tiny-qwen2.5-coder" in unknown_model.json()["error"]["message"]
    )
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["message"] == "/v1/chat/completions takes POST, not GET"
    assert no_route.status_code == 404
    assert no_route.json()["error"]["message"].startswith("no route /v1/embeddings; ")


def raw_post(server: OpenAIServerProcess, path: str, head: str, body: bytes) -> socket.socket:
    """Sends a request on a socket of its own and returns the socket, so the test decides when
    to read the reply or hang up."""
    url = urlsplit(server.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(
        f"POST {url.path}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {server.api_key}\r\nContent-Type: application/json\r\n"
        f"{head}\r\n".encode()
        + body
    )
    return sock


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    openai_server: OpenAIServerProcess,
) -> None:
    with raw_post(openai_server, "/completions", "Content-Length: 20000000\r\n", b"{") as sock:
        status_line = sock.recv(65536).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("chat", [True, False])
def test_streaming_is_server_sent_events_ending_with_done(
    openai_server: OpenAIServerProcess, chat: bool
) -> None:
    path = "/v1/chat/completions" if chat else "/v1/completions"
    prompt: dict[str, Any] = (
        {"messages": [{"role": "user", "content": "Hi"}]} if chat else {"prompt": PROMPT}
    )
    request = {"model": "tiny", **prompt, "max_tokens": 4, "temperature": 0, "stream": True}
    with client(openai_server) as http, http.stream("POST", path, json=request) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        raw = reply.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]  # each event ends with a blank line
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk" if chat else "text_completion"}
    choices = [c["choices"][0] for c in chunks]
    assert [c["finish_reason"] for c in choices] == [None] * (len(choices) - 1) + ["stop"]
    if chat:
        assert choices[0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(c["delta"].get("content", "") for c in choices)
    else:
        text = "".join(c["text"] for c in choices)
    with client(openai_server) as http:
        whole = http.post(path, json={**request, "stream": False}).json()["choices"][0]
    assert text == (whole["message"]["content"] if chat else whole["text"])


def test_hanging_up_cancels_a_non_streamed_request(openai_server: OpenAIServerProcess) -> None:
    before = openai_server.stats()
    body = json.dumps(
        {"model": "tiny", "prompt": PROMPT, "max_tokens": 3000, "temperature": 0}
    ).encode()
    sock = raw_post(openai_server, "/completions", f"Content-Length: {len(body)}\r\n", body)
    with sock:
        started = wait_for(openai_server, lambda s: s["backend"]["active"] == 1)
        assert started["backend"]["active"] == 1, started
    after = wait_for(
        openai_server,
        lambda s: (
            s["backend"]["active"] == 0
            and s["server"]["disconnects"] > before["server"]["disconnects"]
        ),
    )
    assert after["backend"]["active"] == 0
    assert after["server"]["disconnects"] == before["server"]["disconnects"] + 1
    assert after["backend"]["cancelled"] == before["backend"]["cancelled"] + 1
    assert after["backend"]["steps"] - before["backend"]["steps"] < 1500  # far from 3000


def test_without_the_serve_extra_the_cli_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # None in sys.modules: import fails
    assert main(["--model", "smollm2-135m-instruct"]) == 1
    assert SERVE_EXTRA_MISSING in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_shuts_the_server_down_cleanly(
    tiny_model_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    server = start_openai_server(tiny_model_dir, tmp_path)
    with client(server) as http:
        assert http.get("/v1/models").status_code == 200
    assert server.stop(sig) == 0
    log = server.log_path.read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log


def test_auto_runs_gguf_on_llamacpp_and_checkpoints_on_transformers(
    tiny_model_dir: Path,
) -> None:
    from collabcoder.server.backends.factory import make_backend
    from collabcoder.server.backends.llamacpp_backend import LlamaCppBackend, gguf_file
    from collabcoder.server.backends.transformers_backend import TransformersBackend

    assert isinstance(make_backend("auto", "smollm2-135m-instruct"), LlamaCppBackend)
    shipped = str(gguf_file("smollm2-135m-instruct"))
    assert isinstance(make_backend("auto", shipped), LlamaCppBackend)
    assert isinstance(make_backend("auto", str(tiny_model_dir), dtype="float32"),
                      TransformersBackend)  # fmt: skip
    with pytest.raises(ValueError, match="unknown option 'dtype' for the 'llamacpp' backend"):
        make_backend("auto", shipped, dtype="float32")


def test_the_embedded_gguf_is_served_on_llamacpp_without_torch(tmp_path: Path) -> None:
    """The shipped SmolLM2 GGUF behind the server, asked through the openai SDK."""
    import openai

    server = start_openai_server("smollm2-135m-instruct", tmp_path, names=("smollm2",), extra=())
    try:
        sdk = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
        reply = sdk.chat.completions.create(
            model="smollm2", max_tokens=8, temperature=0.0,
            messages=[{"role": "user", "content": "Write a Python function add(a, b)."}],
        )  # fmt: skip
        assert reply.choices[0].message.content and reply.usage is not None
        assert reply.usage.completion_tokens <= 8
        stats = server.stats()["backend"]
        assert stats["prompt_evaluated"] > 0  # llama.cpp's counters, not transformers'
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "libtorch" not in maps and "libllama" in maps
    finally:
        assert server.stop() == 0
