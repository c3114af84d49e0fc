"""An OpenAI-compatible HTTP server in front of an in-process Backend (llama.cpp for GGUF
models, the embedded default among them; transformers for safetensors checkpoints), so other
tools can use a local model and our HTTP backend can be tested against a real server.

    python -m collabcoder.server.openai_server --model smollm2-135m-instruct --port 8000 \
        [--backend auto|llamacpp|transformers] [--api-key KEY | env COLLABCODER_API_KEY] \
        [--served-model-name NAME] [--host 127.0.0.1]

Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions, POST /v1/completions
(both with `stream: true` as server-sent events ending `data: [DONE]`), GET /health (no key
needed) and GET /stats (request counters plus the backend's generation counters).

HTTP is Starlette's (routing, requests, StreamingResponse) served by uvicorn, from the `serve`
extra (`pip install 'collabcoder[serve]'`); ours is the mapping to and from OpenAI's JSON
(`openai_api.py`). When a client goes away, generation stops: streamed replies through
StreamingResponse's disconnect listener, non-streamed ones through a watcher on the request.

For a GGUF model alone, llama-cpp-python's own maintained server is the alternative:
`pip install 'llama-cpp-python[server]'`, then `python -m llama_cpp.server --model <file.gguf>`.
The embedded model's file is
`collabcoder.server.backends.llamacpp_backend.gguf_file("smollm2-135m-instruct")`.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from collabcoder.server.backends.base import Backend, BackendError, CompletionRequest
from collabcoder.server.backends.factory import in_process_kind, make_backend
from collabcoder.server.openai_api import (
    DONE_EVENT,
    ApiError,
    chunk,
    completion_request,
    field,
    model_card,
    parse_body,
    reply,
    reply_id,
    served_model,
    sse,
)

if TYPE_CHECKING:  # starlette and uvicorn are the `serve` extra: imported when serving
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("collabcoder.openai_server")

SERVE_EXTRA_MISSING = (
    "python -m collabcoder.server.openai_server needs the 'serve' extra: "
    "pip install 'collabcoder[serve]'"
)
ROUTES = "/v1/models, /v1/chat/completions, /v1/completions, /health, /stats"
MAX_BODY_BYTES = 16 * 1024 * 1024
GRACEFUL_SHUTDOWN_S = 5  # then uvicorn cancels requests still running


@dataclass
class ServerStats:
    requests: int = 0
    active: int = 0
    completed: int = 0
    errors: int = 0
    disconnects: int = 0  # clients that went away before their reply was complete


class RequestCounter:
    """ASGI middleware keeping `ServerStats`: a request whose client said goodbye
    (`http.disconnect`) before the last byte of its reply went out counts as a disconnect."""

    def __init__(self, app: ASGIApp, stats: ServerStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = self.stats
        status, sent_all, gone = 0, False, False

        async def watched_receive() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or (message["type"] == "http.disconnect" and not sent_all)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal status, sent_all
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                sent_all = True
            await send(message)

        stats.requests += 1
        stats.active += 1
        try:
            await self.app(scope, watched_receive, watched_send)
        except BaseException:
            status = 500
            raise
        finally:
            stats.active -= 1
            if gone:
                stats.disconnects += 1
                log.info("%s %s: client went away, generation cancelled", scope["method"],
                         scope["path"])  # fmt: skip
            elif status >= 400:
                stats.errors += 1
            else:
                stats.completed += 1


async def _until_disconnected(request: Request) -> None:
    """Returns when the client goes away: its body has been read, so the next message uvicorn
    hands over is `http.disconnect` (it waits for one without polling)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class OpenAIServer:
    """The routes' state and handlers; `app()` wires them into a Starlette application."""

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

    def _check_key(self, request: Request) -> None:
        if self._api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(), self._api_key.encode()
        ):
            raise ApiError(401, "invalid or missing API key", code="invalid_api_key")

    # ---- routes -----------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        self._check_key(request)
        cards = [model_card(n, self.created) for n in self.served_names]
        return JSONResponse({"object": "list", "data": cards})

    async def model(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        self._check_key(request)
        name = request.path_params["name"]
        if name not in self.served_names:
            raise ApiError(404, f"The model '{name}' does not exist", code="model_not_found")
        return JSONResponse(model_card(name, self.created))

    async def server_stats(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        self._check_key(request)
        stats_fn = getattr(self.backend, "stats", None)
        backend_stats = stats_fn() if callable(stats_fn) else {}
        return JSONResponse({"server": asdict(self.stats), "backend": backend_stats})

    async def completions(self, request: Request, chat: bool) -> Response:
        """POST /v1/chat/completions (chat) and /v1/completions."""
        from starlette.background import BackgroundTask
        from starlette.responses import JSONResponse, Response, StreamingResponse

        self._check_key(request)
        body = parse_body(await self._read_body(request))
        model = served_model(body, self.served_names)
        completion, echo = completion_request(body, chat, self.default_max_tokens)
        if field(body, "stream", (bool,), False):
            events = self._events(completion, model, chat)
            # StreamingResponse cancels the stream when the client goes away; closing the
            # generator afterwards (the background task) closes the backend's stream too.
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                background=BackgroundTask(events.aclose),
            )
        work = asyncio.ensure_future(self.backend.complete(completion))
        watcher = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not work.done():  # the client went away (or we are cancelled): stop the model
                work.cancel()
                with suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():  # RequestCounter logs and counts the disconnect
            return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
        prefix = (completion.prompt or "") if echo else ""
        return JSONResponse(reply(work.result(), model, chat, prefix))

    @staticmethod
    async def _read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        return bytes(body)

    async def _events(
        self, request: CompletionRequest, model: str, chat: bool
    ) -> AsyncGenerator[bytes, None]:
        """Server-sent events; n > 1 streams the choices one after another, each with its index."""
        ident, created = reply_id(chat), int(time.time())
        for index in range(request.n):
            seed = None if request.seed is None else request.seed + index
            one = replace(request, n=1, seed=seed)
            if chat:
                yield chunk(ident, created, model, chat, index, "", None, first=True)
            pieces: AsyncIterator[str] = self.backend.stream(one)
            try:
                async for piece in pieces:
                    yield chunk(ident, created, model, chat, index, piece, None)
            except Exception as exc:  # headers are out: report in-band, as OpenAI does
                self.stats.errors += 1
                log.error("stream failed: %s", exc, exc_info=not isinstance(exc, BackendError))
                message = str(exc) if isinstance(exc, BackendError) else type(exc).__name__
                yield sse(ApiError(500, message, type_="server_error").body())
                return
            finally:
                # Closing the backend's stream is what stops the model when we are cancelled.
                aclose = getattr(pieces, "aclose", None)
                if aclose is not None:
                    await aclose()
            yield chunk(ident, created, model, chat, index, None if chat else "", "stop")
        yield DONE_EVENT

    # ---- errors -----------------------------------------------------------------------------

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        path, allowed = request.url.path, ""
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, HTTPException):  # the router's 404 and 405
            allowed = (exc.headers or {}).get("Allow", "")
            if exc.status_code == 404:
                error = ApiError(404, f"no route {path}; this server has {ROUTES}")
            elif allowed:
                error = ApiError(exc.status_code, f"{path} takes {allowed}, not {request.method}")
            else:
                error = ApiError(exc.status_code, exc.detail)
        elif isinstance(exc, BackendError):
            log.error("%s %s: %s", request.method, path, exc)
            error = ApiError(500, str(exc), type_="server_error")
        else:  # a bug; uvicorn logs its traceback
            error = ApiError(500, f"internal error: {type(exc).__name__}", type_="server_error")
        headers = {"Allow": allowed} if allowed else {}
        if error.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    def app(self) -> Starlette:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.middleware import Middleware
        from starlette.routing import Route

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await self.backend.aclose()

        routes = [
            Route("/health", self.health),
            Route("/stats", self.server_stats),
            Route("/v1/models", self.models),
            Route("/v1/models/{name:path}", self.model),
            Route("/v1/chat/completions", partial(self.completions, chat=True), methods=["POST"]),
            Route("/v1/completions", partial(self.completions, chat=False), methods=["POST"]),
        ]
        return Starlette(
            routes=routes,
            middleware=[Middleware(RequestCounter, stats=self.stats)],
            exception_handlers={
                ApiError: self._api_error,
                BackendError: self._api_error,
                HTTPException: self._api_error,
                Exception: self._api_error,
            },
            lifespan=lifespan,
        )


async def serve(
    backend: Backend,
    served_names: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    default_max_tokens: int = 256,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's graceful shutdown, then the backend is closed).
    Prints one line with the URL once it accepts connections."""
    import uvicorn

    app = OpenAIServer(backend, served_names, api_key, default_max_tokens).app()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # uvicorn's loggers go to ours (stderr); stdout has only the URL
        log_level=log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # port 0 is known only now
                bound = self.servers[0].sockets[0].getsockname()
                url_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
                print(
                    f"collabcoder openai_server: serving {', '.join(served_names)} at "
                    f"http://{url_host}:{bound[1]}/v1",
                    flush=True,
                )

    await AnnouncingServer(config).serve()


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
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "llamacpp", "transformers"],
        help="in-process engine; auto: llamacpp for GGUF models (the embedded default), "
        "transformers for safetensors checkpoints",
    )
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="transformers only",
    )
    parser.add_argument(
        "--max-tokens-default", type=int, default=256, help="max_tokens when a request gives none"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:  # before the model loads: fail in a second, not after it
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"error: {SERVE_EXTRA_MISSING} ({exc})", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        log.warning(
            "listening on %s without an API key: anyone who can reach it can use it", args.host
        )

    try:
        kind = in_process_kind(args.model) if args.backend == "auto" else args.backend
        opts = {"dtype": args.dtype} if kind == "transformers" else {}
        backend = make_backend(kind, args.model, **opts)
        load = getattr(backend, "load", None)
        if callable(load):
            load()  # before listening: readiness means the model is in memory
    except (BackendError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    names = args.served_names or [args.model]
    serving = serve(
        backend, names, args.host, args.port, args.api_key, args.max_tokens_default, args.log_level
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: as
    # KeyboardInterrupt, both end here in a clean exit.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with suppress(KeyboardInterrupt):
        asyncio.run(serving)
    return 0


if __name__ == "__main__":
    sys.exit(main())
