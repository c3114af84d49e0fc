"""A small OpenAI-compatible HTTP server in front of any Backend (in practice the embedded
TransformersBackend), so other tools can use the embedded model and our HTTP backend can be
tested against a real server.

    python -m collabcoder.server.openai_server --model smollm2-135m-instruct --port 8000 \
        [--api-key KEY | env COLLABCODER_API_KEY] [--served-model-name NAME] [--host 127.0.0.1]

Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions, POST /v1/completions
(both with `stream: true` as server-sent events), GET /health (no key needed) and GET /stats
(request counters plus the backend's generation counters).

Plain asyncio, no web framework: one request per connection (`Connection: close`), which lets a
watcher read the socket while the model works and cancel generation the moment the client goes
away, for streamed and non-streamed requests alike.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import http
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import Any

from collabcoder.server.backends.base import Backend, BackendError, Candidate, CompletionRequest

log = logging.getLogger("collabcoder.openai_server")

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
HEADER_TIMEOUT_S = 30.0
MAX_N = 16


class HttpError(Exception):
    """An error reply in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ServerStats:
    requests: int = 0
    active: int = 0
    completed: int = 0
    errors: int = 0
    disconnects: int = 0  # clients that went away before their reply was complete


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpRequest:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request headers too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "Content-Length is not a number") from None
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
    if length and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for this on large bodies
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(method.upper(), target.split("?", 1)[0], headers, body)


async def _wait_for_eof(reader: asyncio.StreamReader) -> None:
    """Returns when the client closes its side: the request has been read, so any read that
    ends means the client is gone."""
    with suppress(ConnectionError):
        while await reader.read(65536):
            pass


def _head(status: int, content_type: str, length: int | None = None, extra: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += ["Cache-Control: no-cache", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def _json_reply(status: int, payload: object, extra: str = "") -> bytes:
    body = json.dumps(payload).encode()
    return _head(status, "application/json", len(body), extra) + body


def _sse(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


# ---- request validation ---------------------------------------------------------------------


def _field(body: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    # bool is an int subclass: `"n": true` is a mistake, not 1.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise HttpError(
            400, f"'{name}' must be {expected}, got {json.dumps(value)[:60]}", param=name
        )
    return value


def _message_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(str(p) for p in parts)
    raise HttpError(
        400, "message content must be a string or a list of text parts", param="messages"
    )


def _sampling(body: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    n = _field(body, "n", (int,), 1)
    if not 1 <= n <= MAX_N:
        raise HttpError(400, f"'n' must be between 1 and {MAX_N}, got {n}", param="n")
    temperature = float(_field(body, "temperature", (int, float), 1.0))
    top_p = float(_field(body, "top_p", (int, float), 1.0))
    max_tokens = _field(
        body,
        "max_completion_tokens",
        (int,),
        _field(body, "max_tokens", (int,), default_max_tokens),
    )
    if max_tokens < 1:
        raise HttpError(400, f"'max_tokens' must be >= 1, got {max_tokens}", param="max_tokens")
    stop = _field(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else stop
    if not all(isinstance(s, str) for s in stops):
        raise HttpError(400, "'stop' must be a string or a list of strings", param="stop")
    seed = _field(body, "seed", (int,), None)
    return {
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "stop": tuple(s for s in stops if s),
        "seed": seed,
    }


def _finish_reason(candidate: Candidate) -> str:
    return candidate.finish_reason if candidate.finish_reason in ("stop", "length") else "stop"


class OpenAIServer:
    def __init__(
        self,
        backend: Backend,
        served_names: Sequence[str],
        api_key: str | None = None,
        default_max_tokens: int = 256,
    ) -> None:
        if not served_names:
            raise ValueError("served_names must name at least one model")
        self.backend = backend
        self.served_names = list(served_names)
        self._api_key = api_key or None
        self.default_max_tokens = default_max_tokens
        self.stats = ServerStats()
        self.created = int(time.time())

    # ---- connection handling ----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
        return await asyncio.start_server(self._on_connection, host, port, limit=MAX_HEADER_BYTES)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader, writer), HEADER_TIMEOUT_S)
            except HttpError as exc:
                writer.write(_json_reply(exc.status, exc.body()))
                return
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                return
            self.stats.requests += 1
            self.stats.active += 1
            start = time.perf_counter()
            handler = asyncio.create_task(self._respond(request, writer))
            watcher = asyncio.create_task(_wait_for_eof(reader))
            try:
                await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if not handler.done():
                    # The client hung up (or cancelled its request): stop the model now.
                    self.stats.disconnects += 1
                    log.info(
                        "%s %s: client went away, generation cancelled",
                        request.method,
                        request.path,
                    )
                    handler.cancel()
                with suppress(asyncio.CancelledError, ConnectionError):
                    status = await handler
                    log.info(
                        "%s %s -> %d (%.2f s)",
                        request.method,
                        request.path,
                        status,
                        time.perf_counter() - start,
                    )
            finally:
                watcher.cancel()
                handler.cancel()
                self.stats.active -= 1
        finally:
            with suppress(ConnectionError):
                await writer.drain()
            writer.close()
            with suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _respond(self, request: HttpRequest, writer: asyncio.StreamWriter) -> int:
        """Route and answer one request; returns the status code."""
        try:
            status = await self._route(request, writer)
            self.stats.completed += 1
            return status
        except HttpError as exc:
            self.stats.errors += 1
            extra = "WWW-Authenticate: Bearer\r\n" if exc.status == 401 else ""
            writer.write(_json_reply(exc.status, exc.body(), extra))
            return exc.status
        except BackendError as exc:
            self.stats.errors += 1
            log.error("%s %s: %s", request.method, request.path, exc)
            writer.write(_json_reply(500, HttpError(500, str(exc), type_="server_error").body()))
            return 500
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # a bug here must not kill the server, only this request
            self.stats.errors += 1
            log.exception("%s %s failed", request.method, request.path)
            body = HttpError(
                500, f"internal error: {type(exc).__name__}", type_="server_error"
            ).body()
            writer.write(_json_reply(500, body))
            return 500

    def _check_key(self, request: HttpRequest) -> None:
        if self._api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(), self._api_key.encode()
        ):
            raise HttpError(401, "invalid or missing API key", code="invalid_api_key")

    def _model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HttpError(400, "'model' is required", param="model")
        if model not in self.served_names:
            raise HttpError(
                404,
                f"The model '{model}' does not exist; this server serves: {', '.join(self.served_names)}",
                type_="NotFoundError",
                param="model",
                code="model_not_found",
            )
        return model

    def _model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "collabcoder"}

    async def _route(self, request: HttpRequest, writer: asyncio.StreamWriter) -> int:
        method, path = request.method, request.path.rstrip("/") or "/"
        if path == "/health":
            writer.write(_json_reply(200, {"status": "ok"}))
            return 200
        routes = {
            "/v1/models": "GET",
            "/stats": "GET",
            "/v1/chat/completions": "POST",
            "/v1/completions": "POST",
        }
        expected = "GET" if path.startswith("/v1/models/") else routes.get(path)
        if expected is None:
            raise HttpError(404, f"no route {path}; this server has {', '.join(routes)}")
        if method != expected:
            raise HttpError(405, f"{path} takes {expected}, not {method}")
        self._check_key(request)
        if path == "/v1/models":
            cards = [self._model_card(n) for n in self.served_names]
            writer.write(_json_reply(200, {"object": "list", "data": cards}))
            return 200
        if path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            if name not in self.served_names:
                raise HttpError(404, f"The model '{name}' does not exist", code="model_not_found")
            writer.write(_json_reply(200, self._model_card(name)))
            return 200
        if path == "/stats":
            stats_fn = getattr(self.backend, "stats", None)
            backend_stats = stats_fn() if callable(stats_fn) else {}
            writer.write(_json_reply(200, {"server": asdict(self.stats), "backend": backend_stats}))
            return 200
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise HttpError(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the request body must be a JSON object")
        chat = path == "/v1/chat/completions"
        model = self._model(body)
        completion_request, echo = self._completion_request(body, chat)
        if _field(body, "stream", (bool,), False):
            await self._stream(writer, completion_request, model, chat)
        else:
            candidates = await self.backend.complete(completion_request)
            prefix = (completion_request.prompt or "") if echo else ""
            writer.write(_json_reply(200, self._reply(candidates, model, chat, prefix)))
        return 200

    def _completion_request(
        self, body: dict[str, Any], chat: bool
    ) -> tuple[CompletionRequest, bool]:
        sampling = _sampling(body, self.default_max_tokens)
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise HttpError(400, "'messages' must be a non-empty list", param="messages")
            if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
                raise HttpError(400, "each message needs a string 'role'", param="messages")
            turns = tuple(
                {"role": m["role"], "content": _message_text(m.get("content"))} for m in messages
            )
            return CompletionRequest(messages=turns, **sampling), False
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise HttpError(
                400, "'prompt' must be a string (one prompt per request)", param="prompt"
            )
        suffix = _field(body, "suffix", (str,), None)
        echo = bool(_field(body, "echo", (bool,), False))
        return CompletionRequest(prompt=prompt, suffix=suffix, **sampling), echo

    def _reply(
        self, candidates: list[Candidate], model: str, chat: bool, prefix: str = ""
    ) -> dict[str, Any]:
        completion_tokens = sum(c.completion_tokens for c in candidates)
        prompt_tokens = candidates[0].prompt_tokens if candidates else 0
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": None,
                    "finish_reason": _finish_reason(c),
                }
                for i, c in enumerate(candidates)
            ]
        else:
            choices = [
                {
                    "index": i,
                    "text": prefix + c.text,
                    "logprobs": None,
                    "finish_reason": _finish_reason(c),
                }
                for i, c in enumerate(candidates)
            ]
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def _stream(
        self, writer: asyncio.StreamWriter, request: CompletionRequest, model: str, chat: bool
    ) -> None:
        """Server-sent events; n > 1 streams the choices one after another, each with its index."""
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> bytes:
            if chat:
                delta: dict[str, Any] = {"role": "assistant"} if first else {}
                if text is not None:
                    delta["content"] = text
                choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": index, "text": text or "", "finish_reason": finish}
            return _sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                }
            )

        writer.write(_head(200, "text/event-stream"))
        for index in range(request.n):
            seed = None if request.seed is None else request.seed + index
            one = CompletionRequest(
                messages=request.messages,
                prompt=request.prompt,
                suffix=request.suffix,
                n=1,
                temperature=request.temperature,
                top_p=request.top_p,
                max_tokens=request.max_tokens,
                stop=request.stop,
                seed=seed,
            )
            if chat:
                writer.write(chunk(index, "", None, first=True))
            pieces: AsyncIterator[str] = self.backend.stream(one)
            try:
                async for piece in pieces:
                    writer.write(chunk(index, piece, None))
                    await writer.drain()
            except Exception as exc:  # headers are out: report in-band, as OpenAI does
                self.stats.errors += 1
                log.error("stream failed: %s", exc, exc_info=not isinstance(exc, BackendError))
                message = str(exc) if isinstance(exc, BackendError) else type(exc).__name__
                writer.write(_sse(HttpError(500, message, type_="server_error").body()))
                return
            finally:
                # Closing the generator is what stops the model when we are cancelled.
                aclose = getattr(pieces, "aclose", None)
                if aclose is not None:
                    await aclose()
            writer.write(chunk(index, None if chat else "", "stop"))
        writer.write(b"data: [DONE]\n\n")


async def serve(
    backend: Backend,
    served_names: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    default_max_tokens: int = 256,
) -> None:
    """Serve until SIGINT/SIGTERM. Prints one line with the URL once it accepts connections."""
    app = OpenAIServer(backend, served_names, api_key, default_max_tokens)
    server = await app.start(host, port)
    bound = server.sockets[0].getsockname()
    url_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(
        f"collabcoder openai_server: serving {', '.join(served_names)} at "
        f"http://{url_host}:{bound[1]}/v1",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    await backend.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collabcoder.server.openai_server",
        description="Serve a model through an OpenAI-compatible HTTP API.",
    )
    parser.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="short name (smollm2-135m-instruct), hub id or local model folder",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("COLLABCODER_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $COLLABCODER_API_KEY)",
    )
    parser.add_argument(
        "--served-model-name",
        action="append",
        dest="served_names",
        help="name clients use for the model (repeatable; default: --model)",
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument(
        "--max-tokens-default", type=int, default=256, help="max_tokens when a request gives none"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        log.warning(
            "listening on %s without an API key: anyone who can reach it can use it", args.host
        )

    from collabcoder.server.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(args.model, dtype=args.dtype)
    try:
        backend.load()  # before listening: readiness means the model is in memory
    except (BackendError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    asyncio.run(
        serve(
            backend,
            args.served_names or [args.model],
            args.host,
            args.port,
            args.api_key,
            args.max_tokens_default,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
