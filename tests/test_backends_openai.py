"""OpenAIBackend against real HTTP servers on 127.0.0.1: our openai_server serving the tiny model
(a subprocess, see conftest), and a scripted raw HTTP server for the failures a real server
rarely produces on demand (503s, garbage, slow replies)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import OpenAIServerProcess

from collabcoder.server.backends import BackendError, CompletionRequest, build_fim_prompt
from collabcoder.server.backends.openai_backend import EndpointError, OpenAIBackend

PROMPT = "def add(a, b):\n"
HI = ({"role": "user", "content": "Write a function that adds two numbers."},)


def backend(server: OpenAIServerProcess, **kwargs: Any) -> OpenAIBackend:
    kwargs.setdefault("api_key", server.api_key)
    return OpenAIBackend(kwargs.pop("model", server.model), server.base_url, **kwargs)


async def wait_for(
    server: OpenAIServerProcess, check: Any, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Poll the server's /stats until `check(stats)` holds; returns those stats."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await asyncio.to_thread(server.stats)
        if check(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.02)


# ---- the real server ----------------------------------------------------------------------------


async def test_chat_returns_n_candidates_with_counts_and_timing(
    openai_server: OpenAIServerProcess,
) -> None:
    b = backend(openai_server)
    request = CompletionRequest(messages=HI, n=3, temperature=1.0, seed=1, max_tokens=8)
    candidates = await b.complete(request)
    await b.aclose()
    assert len(candidates) == 3
    assert len({c.text for c in candidates}) > 1  # sampled, not copies
    assert all(c.prompt_tokens > 10 and c.latency_s > 0 for c in candidates)
    assert sum(c.completion_tokens for c in candidates) == 3 * 8  # the tiny model never stops
    assert {c.finish_reason for c in candidates} == {"length"}


async def test_completions_endpoint_and_greedy_n(openai_server: OpenAIServerProcess) -> None:
    b = backend(openai_server, endpoint_kind="completions")
    candidates = await b.complete(CompletionRequest(prompt=PROMPT, n=2, max_tokens=5))
    await b.aclose()
    assert [c.completion_tokens for c in candidates] == [5, 5]
    assert candidates[0].text == candidates[1].text  # temperature 0: n copies of the greedy path


async def test_streaming_matches_the_non_streamed_text(openai_server: OpenAIServerProcess) -> None:
    for kind, req in (
        ("chat", CompletionRequest(messages=HI, temperature=1.0, seed=7, max_tokens=24)),
        ("completions", CompletionRequest(prompt=PROMPT, temperature=1.0, seed=7, max_tokens=24)),
    ):
        b = backend(openai_server, endpoint_kind=kind)
        pieces = [piece async for piece in b.stream(req)]
        [whole] = await b.complete(req)
        await b.aclose()
        assert len(pieces) > 3, kind
        assert "".join(pieces) == whole.text, kind


async def test_stop_sequences_end_the_text_before_the_stop(
    openai_server: OpenAIServerProcess,
) -> None:
    b = backend(openai_server, endpoint_kind="completions")
    base = CompletionRequest(prompt=PROMPT, temperature=1.0, seed=3, max_tokens=40)
    [full] = await b.complete(base)
    stop = re.findall(r"[A-Za-z]{3}", full.text[3:])[0]
    cut = full.text.index(stop)
    request = CompletionRequest(prompt=PROMPT, temperature=1.0, seed=3, max_tokens=40, stop=(stop,))
    [stopped] = await b.complete(request)
    streamed = "".join([p async for p in b.stream(request)])
    await b.aclose()
    assert stopped.text == full.text[:cut] == streamed
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < full.completion_tokens


async def test_fim_prompt_is_built_from_the_model_name(
    openai_server: OpenAIServerProcess, tiny_model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    b = backend(openai_server, model="tiny-qwen2.5-coder", endpoint_kind="completions")
    assert b.fim is not None and b.fim.name == "qwen2.5-coder"
    [filled] = await b.complete(CompletionRequest(prompt=prefix, suffix=suffix, max_tokens=4))
    [plain] = await b.complete(CompletionRequest(prompt=prefix, max_tokens=4))
    await b.aclose()
    # The server tokenized exactly our FIM prompt: its three FIM markers are single tokens.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fim_prompt = build_fim_prompt(prefix, suffix, "qwen2.5-coder")
    assert filled.prompt_tokens == len(tokenizer(fim_prompt)["input_ids"])
    assert plain.prompt_tokens == len(tokenizer(prefix)["input_ids"])
    assert filled.prompt_tokens > plain.prompt_tokens + 3


async def test_cancelling_complete_stops_generation_on_the_server(
    openai_server: OpenAIServerProcess,
) -> None:
    b = backend(openai_server, endpoint_kind="completions")
    before = await asyncio.to_thread(openai_server.stats)
    # Greedy on this prompt never emits EOS: 3000 tokens would take ~10 s.
    task = asyncio.create_task(b.complete(CompletionRequest(prompt=PROMPT, max_tokens=3000)))
    await wait_for(openai_server, lambda s: s["backend"]["active"] == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancelled_at = time.monotonic()
    after = await wait_for(
        openai_server,
        lambda s: (
            s["backend"]["active"] == 0
            and s["server"]["disconnects"] > before["server"]["disconnects"]
        ),
    )
    await b.aclose()
    assert after["server"]["disconnects"] == before["server"]["disconnects"] + 1
    assert after["backend"]["active"] == 0
    assert time.monotonic() - cancelled_at < 3
    assert after["backend"]["cancelled"] == before["backend"]["cancelled"] + 1
    assert after["backend"]["steps"] - before["backend"]["steps"] < 1500


async def test_cancelling_a_stream_closes_it_and_stops_generation(
    openai_server: OpenAIServerProcess,
) -> None:
    b = backend(openai_server)
    before = await asyncio.to_thread(openai_server.stats)
    received: list[str] = []
    three = asyncio.Event()

    async def consume() -> None:
        async for piece in b.stream(CompletionRequest(messages=HI, max_tokens=3000)):
            received.append(piece)
            if len(received) == 3:
                three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await wait_for(
        openai_server,
        lambda s: (
            s["backend"]["active"] == 0
            and s["server"]["disconnects"] > before["server"]["disconnects"]
        ),
    )
    await b.aclose()
    assert after["server"]["disconnects"] == before["server"]["disconnects"] + 1
    assert after["backend"]["active"] == 0
    assert after["backend"]["steps"] - before["backend"]["steps"] < 1500


async def test_wrong_api_key_is_a_401_error_without_the_key(
    openai_server: OpenAIServerProcess,
) -> None:
    wrong = "sk-wrong-0123456789"
    b = backend(openai_server, api_key=wrong)
    with pytest.raises(BackendError) as info:
        await b.complete(CompletionRequest(messages=HI, max_tokens=2))
    await b.aclose()
    message = str(info.value)
    assert isinstance(info.value, EndpointError) and info.value.status == 401
    assert "401" in message and "API key" in message and openai_server.base_url in message
    assert wrong not in message and wrong not in repr(b)


async def test_unknown_model_is_reported_with_what_the_server_serves(
    openai_server: OpenAIServerProcess,
) -> None:
    b = backend(openai_server, model="gpt-17")
    with pytest.raises(BackendError, match=r"model 'gpt-17' not found; the server serves: tiny"):
        await b.complete(CompletionRequest(messages=HI, max_tokens=2))
    await b.aclose()
    # Without the /v1/models check, the request's own 404 says the same.
    b = backend(openai_server, model="gpt-17", check_model=False)
    with pytest.raises(BackendError, match=r"/chat/completions: model 'gpt-17' not found \(404\)"):
        await b.complete(CompletionRequest(messages=HI, max_tokens=2))
    await b.aclose()


async def test_unreachable_endpoint_names_the_url() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    b = OpenAIBackend("m", url, max_retries=1, backoff_s=0.01)
    with pytest.raises(
        BackendError, match=rf"cannot reach {re.escape(url)}/.*connection refused after 2 attempts"
    ):
        await b.complete(CompletionRequest(messages=HI))
    await b.aclose()


def test_server_rejects_bad_requests(openai_server: OpenAIServerProcess) -> None:
    import urllib.error
    import urllib.request

    def post(path: str, body: bytes, key: str | None = openai_server.api_key) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        req = urllib.request.Request(openai_server.base_url + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    assert post("/chat/completions", b"{not json")[0] == 400
    status, body = post(
        "/chat/completions", json.dumps({"model": "tiny", "messages": [], "n": 2}).encode()
    )
    assert status == 400 and body["error"]["param"] == "messages"
    status, body = post(
        "/completions", json.dumps({"model": "tiny", "prompt": "x", "n": True}).encode()
    )
    assert status == 400 and "'n' must be int" in body["error"]["message"]
    assert post("/completions", b"{}", key=None)[0] == 401
    assert post("/nowhere", b"{}")[0] == 404
    status, body = post(
        "/completions",
        json.dumps({"model": "tiny", "prompt": "ab", "echo": True, "max_tokens": 2}).encode(),
    )
    assert status == 200 and body["choices"][0]["text"].startswith("ab")


async def test_server_streams_n_choices_to_any_openai_client(
    openai_server: OpenAIServerProcess,
) -> None:
    import openai

    client = openai.AsyncOpenAI(api_key=openai_server.api_key, base_url=openai_server.base_url)
    texts = {0: "", 1: ""}
    finished: set[int] = set()
    stream = await client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Write a function."}],
        n=2,
        max_tokens=6,
        stream=True,
        temperature=0,
    )
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    await client.close()
    assert finished == {0, 1}
    assert texts[0] and texts[0] == texts[1]  # greedy


# ---- a scripted raw HTTP server -----------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def chat_reply(text: str = "ok") -> Reply:
    return Reply(
        body={
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    )


class ScriptedServer:
    """Answers POSTs with `replies` in order (the last one repeats) and records when each came."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.times: list[float] = []
        self.auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.times.append(time.monotonic())
                outer.auth.append(self.headers.get("Authorization", ""))
                reply = outer.replies[min(len(outer.times), len(outer.replies)) - 1]
                time.sleep(reply.delay_s)
                body = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def ask(url: str, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("check_model", False)
    b = OpenAIBackend("m", url, **kwargs)
    try:
        return await b.complete(CompletionRequest(messages=HI))
    finally:
        await b.aclose()


async def test_503_is_retried_with_backoff_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-retry-secret-42"
    with ScriptedServer(
        [Reply(503, {"error": {"message": f"busy ({key})"}}), Reply(503), chat_reply("hello")]
    ) as s:
        [candidate] = await ask(s.url, api_key=key, max_retries=3, backoff_s=0.1)
    assert candidate.text == "hello" and candidate.prompt_tokens == 5
    assert "server error 503" in caplog.text and "retry 2/3" in caplog.text
    assert key not in caplog.text
    assert len(s.times) == 3
    gaps = [b - a for a, b in zip(s.times, s.times[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # exponential: 0.1 s, then 0.2 s


async def test_429_honours_retry_after() -> None:
    with ScriptedServer([Reply(429, headers={"Retry-After": "0.4"}), chat_reply()]) as s:
        await ask(s.url, backoff_s=0.01)
    assert s.times[1] - s.times[0] >= 0.4


async def test_retries_give_up_with_the_last_error() -> None:
    with ScriptedServer([Reply(502, {"error": {"message": "bad gateway"}})]) as s:
        with pytest.raises(BackendError, match=r"server error 502 after 3 attempts: bad gateway"):
            await ask(s.url, max_retries=2, backoff_s=0.01)
    assert len(s.times) == 3


@pytest.mark.parametrize("status", [401, 404, 400])
async def test_client_errors_are_not_retried(status: int) -> None:
    key = "sk-secret-abcdef"
    # A careless server that echoes the key back: the error must still not show it.
    with ScriptedServer(
        [Reply(status, {"error": {"message": f"bad request from Bearer {key}"}})]
    ) as s:
        with pytest.raises(BackendError, match=str(status)) as info:
            await ask(s.url, api_key=key, max_retries=3, backoff_s=0.01)
    assert len(s.times) == 1 and isinstance(info.value, EndpointError)
    assert info.value.status == status
    assert s.auth == [f"Bearer {key}"]
    assert key not in str(info.value)


@pytest.mark.parametrize(
    ("reply", "what"),
    [
        (Reply(200, b"<html>proxy login</html>", {"Content-Type": "text/html"}), "not JSON"),
        (Reply(200, b"{not json", {"Content-Type": "application/json"}), "garbage"),
        (Reply(200, b""), "garbage"),
        (Reply(200, {"choices": []}), "no choices"),
        (Reply(200, {"object": "list"}), "no choices"),
        (Reply(200, {"choices": [{"index": 0, "finish_reason": "stop"}]}), "without a message"),
    ],
)
async def test_garbage_replies_are_backend_errors(reply: Reply, what: str) -> None:
    with ScriptedServer([reply]) as s:
        with pytest.raises(BackendError, match=what) as info:
            await ask(s.url, max_retries=0)
    assert s.url in str(info.value)


async def test_slow_server_times_out() -> None:
    with ScriptedServer([Reply(delay_s=0.6, body=chat_reply().body)]) as s:
        with pytest.raises(BackendError, match=r"no reply within 0.3 s \(timed out\)"):
            await ask(s.url, timeout_s=0.3, max_retries=0)
