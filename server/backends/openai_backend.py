"""OpenAI-compatible HTTP backend: OpenAI, `vllm serve`, Ollama, llama.cpp's server, and our own
`python -m collabcoder.server.openai_server`.

Retries are ours, not the SDK's (the client is built with max_retries=0): only connection errors,
timeouts, 408/409/429 and 5xx are retried, with exponential backoff that honours Retry-After.
Every failure becomes a BackendError (an EndpointError, with the HTTP status where there was one)
naming the URL and what went wrong. The API key comes from
the caller (never from OPENAI_API_KEY) and is kept out of every message, repr and log line.

    backend = OpenAIBackend("Qwen/Qwen2.5-Coder-1.5B", "http://127.0.0.1:8000/v1",
                            endpoint_kind="completions")   # FIM template detected from the name
    [candidate] = await backend.complete(CompletionRequest(prompt=prefix, suffix=suffix))
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Literal, TypeVar

import openai

from collabcoder.server.backends.base import BackendError, Candidate, CompletionRequest
from collabcoder.server.backends.fim import FimTemplate, resolve_fim_template
from collabcoder.server.backends.keys import normalize_api_key, scrub
from collabcoder.server.backends.transformers_backend import StopTrimmer, truncate_at_stop

# The HTTP client the openai SDK is built on: httpx2 from openai 3 on, httpx before. Its transport
# errors can escape a stream that is already being read.
_HTTP_ERROR: type[Exception]
try:
    from httpx2 import HTTPError as _HTTP_ERROR
except ImportError:  # openai < 3
    from httpx import HTTPError as _HTTP_ERROR

log = logging.getLogger(__name__)

EndpointKind = Literal["chat", "completions"]
DEFAULT_ENDPOINT = "https://api.openai.com/v1"
# Servers without authentication ignore the header; the SDK refuses to start without a key.
_NO_KEY = "no-key"
_T = TypeVar("_T")
# A token is rarely over 16 characters (runs of spaces are the long ones): the most text that
# `max_tokens` tokens can need, with room to spare, plus a floor for tiny max_tokens.
MAX_CHARS_PER_TOKEN = 32
MIN_REPLY_CAP = 4096
MAX_JSON_REPLY_BYTES = 16_000_000


def reply_cap(max_tokens: int | None) -> int:
    """The most characters a reply of `max_tokens` tokens is read for."""
    return MIN_REPLY_CAP + MAX_CHARS_PER_TOKEN * max(0, max_tokens or 0)



class EndpointError(BackendError):
    """A BackendError from an HTTP endpoint; `status` is the HTTP status (None: no reply)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _retryable(exc: openai.APIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _retry_after_s(exc: openai.APIError) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    try:
        return float(exc.response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _connection_cause(exc: BaseException) -> str:
    """'connection refused', 'timed out' or the innermost cause's text."""
    seen: BaseException | None = exc
    innermost = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return "connection refused"
        if (
            isinstance(seen, (TimeoutError, openai.APITimeoutError))
            or "Timeout" in type(seen).__name__
        ):
            return "timed out"
        innermost = seen
        seen = seen.__cause__ or seen.__context__
    return str(innermost) or type(innermost).__name__


class OpenAIBackend:
    """`endpoint` is the base URL ending in /v1 (default: OpenAI's). `endpoint_kind` picks
    /chat/completions or /completions; FIM requests (a suffix) need "completions".
    `fim_template`: "auto" (from the model name), None, or a name from `fim.FIM_TEMPLATES`.
    `timeout_s` bounds the wait for a reply (or between two streamed chunks); `max_retries`
    retries of retryable failures, `backoff_s` doubling up to `max_backoff_s`. `check_model`
    asks /v1/models once whether `model` is served. `extra_body` carries server-specific
    parameters (vLLM's top_k, Ollama's options). `prefill`: the server continues a trailing
    assistant message (vLLM and `collabcoder.server.openai_server` do; OpenAI's API does not)."""

    name = "openai"

    def __init__(
        self,
        model: str,
        endpoint: str | None = None,
        api_key: str | None = None,
        *,
        endpoint_kind: EndpointKind = "chat",
        fim_template: str | None = "auto",
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        check_model: bool = True,
        extra_body: Mapping[str, object] | None = None,
        prefill: bool = False,
    ) -> None:
        if endpoint_kind not in ("chat", "completions"):
            raise ValueError(
                f"endpoint_kind must be 'chat' or 'completions', got {endpoint_kind!r}"
            )
        self.model = model
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.endpoint_kind: EndpointKind = endpoint_kind
        # Resolved once: an unknown template name fails here, not on the first keystroke.
        self.fim: FimTemplate | None = resolve_fim_template(model, fim_template)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.check_model = check_model
        self.extra_body = dict(extra_body or {})
        self.supports_prefill = prefill
        self._api_key = normalize_api_key(api_key) or ""  # ApiKeyError: unusable in a header
        self._client: openai.AsyncOpenAI | None = None
        self._model_checked = False
        # A Retry-After longer than max_backoff_s: no request before this instant, and why.
        self._blocked_until = 0.0
        self._blocked_reason = ""
        # The failure being retried right now (None when no retry is pending): when the caller's
        # budget ends during the backoff, this is what it was waiting for.
        self.pending_retry: str | None = None

    def __repr__(self) -> str:  # no key here: reprs end up in logs and tracebacks
        return (
            f"OpenAIBackend(model={self.model!r}, endpoint={self.endpoint!r}, "
            f"endpoint_kind={self.endpoint_kind!r}, api_key={'***' if self._api_key else None})"
        )

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key or _NO_KEY,
                base_url=self.endpoint,
                timeout=openai.Timeout(self.timeout_s, connect=self.connect_timeout_s),
                max_retries=0,
            )
        return self._client

    # ---- request building -------------------------------------------------------------------

    @property
    def _path(self) -> str:
        return "chat/completions" if self.endpoint_kind == "chat" else "completions"

    def build_params(self, request: CompletionRequest) -> dict[str, Any]:
        """The keyword arguments for `client.<kind>.create` (FIM prompt applied, stops merged)."""
        params: dict[str, Any] = {
            "model": self.model,
            "n": request.n,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        if request.logprobs:  # chat: a flag; completions: how many alternatives per token
            params["logprobs"] = True if self.endpoint_kind == "chat" else 1
        stops = list(request.stop)
        if self.endpoint_kind == "chat":
            if request.suffix is not None:
                raise BackendError(
                    f"{self._url()}: a chat endpoint cannot fill in the middle (the request has a "
                    "suffix); use endpoint_kind='completions' with a base coder model"
                )
            if request.messages is not None:
                params["messages"] = [dict(m) for m in request.messages]
                if self.supports_prefill and request.messages[-1]["role"] == "assistant":
                    # vLLM's (and our server's) way to continue a partial assistant reply.
                    prefill_body = {"continue_final_message": True, "add_generation_prompt": False}
                    params["extra_body"] = {**prefill_body, **(self.extra_body or {})}
            else:
                params["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            if request.prompt is None:
                raise BackendError(
                    f"{self._url()}: a completions endpoint takes a prompt, not chat messages; "
                    "use endpoint_kind='chat'"
                )
            prompt = request.prompt
            if request.suffix is not None and self.fim is not None:
                prompt = self.fim.build(prompt, request.suffix)
                stops.extend(self.fim.stop)
            elif request.suffix is not None:  # no template known: let the server try `suffix`
                params["suffix"] = request.suffix
            params["prompt"] = prompt
        if stops:
            params["stop"] = list(dict.fromkeys(stops))
        if self.extra_body and "extra_body" not in params:
            params["extra_body"] = dict(self.extra_body)
        return params

    # ---- errors and retries -----------------------------------------------------------------

    def _url(self, path: str | None = None) -> str:
        return f"{self.endpoint}/{path or self._path}"

    def _redact(self, text: str) -> str:
        return scrub(text, (self._api_key,))

    def _server_message(self, exc: openai.APIError) -> str:
        body = exc.body
        if isinstance(body, Mapping):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, Mapping) else inner
            if message:
                return self._redact(str(message))[:300]
        return self._redact(exc.message)[:300]

    def _error(self, exc: openai.APIError, path: str, attempts: int) -> EndpointError:
        url = self._url(path)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, openai.APIConnectionError):
            cause = _connection_cause(exc)
            if cause == "timed out":
                return EndpointError(
                    f"{url}: no reply within {self.timeout_s:g} s (timed out){tries}"
                )
            return EndpointError(
                f"cannot reach {url}: {self._redact(cause)}{tries}; is the server running and the "
                "endpoint right?"
            )
        if isinstance(exc, openai.APIStatusError):
            status, detail = exc.status_code, self._server_message(exc)
            message = self._status_message(status, detail, url, tries)
            retry_after = _retry_after_s(exc)
            if retry_after is not None:
                message += f"; the server asks to retry after {retry_after:g} s"
            return EndpointError(message, status)
        return EndpointError(f"{url}: garbage reply: {self._redact(str(exc))[:300]}")

    def _status_message(self, status: int, detail: str, url: str, tries: str) -> str:
        if status == 401:
            return (
                f"{url} rejected the API key (401 Unauthorized): {detail}; check the key "
                "configured for this endpoint"
            )
        if status == 403:
            return f"{url}: access denied (403 Forbidden): {detail}"
        if status == 404:
            return (
                f"{url}: model '{self.model}' not found (404): {detail}; check the model name "
                "against the server's /v1/models and that the endpoint ends in /v1"
            )
        if status == 429:
            return f"{url}: rate limited (429){tries}: {detail}"
        if status >= 500:
            return f"{url}: server error {status}{tries}: {detail}"
        return f"{url}: request rejected ({status}): {detail}"

    async def _with_retries(self, call: Callable[[], Awaitable[_T]], path: str) -> _T:
        """Retry what may pass; a Retry-After beyond max_backoff_s is not waited for but
        honoured: until it has passed, requests fail at once with the server's reason."""
        left = self._blocked_until - time.monotonic()
        if left > 0:
            raise EndpointError(f"{self._blocked_reason} ({left:.0f} s left)", 429)
        attempt = 0
        self.pending_retry = None  # kept after a cancellation: the caller reads it then
        while True:
            attempt += 1
            try:
                result = await call()
                self.pending_retry = None
                return result
            except openai.APIError as exc:
                retry_after = _retry_after_s(exc)
                if retry_after is not None and retry_after > self.max_backoff_s:
                    error = self._error(exc, path, attempt)
                    self._blocked_until = time.monotonic() + retry_after
                    self._blocked_reason = str(error)
                    raise error from None
                if not _retryable(exc) or attempt > self.max_retries:
                    raise self._error(exc, path, attempt) from None
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                if retry_after is not None:
                    delay = min(self.max_backoff_s, max(delay, retry_after))
                delay *= 1 + 0.1 * random.random()  # de-synchronise clients retrying together
                self.pending_retry = str(self._error(exc, path, 1))
                log.warning("%s; retry %d/%d in %.2f s", self.pending_retry, attempt,
                            self.max_retries, delay)
                await asyncio.sleep(delay)
            except (ValueError, TypeError) as exc:  # e.g. a 200 whose body is not JSON
                raise EndpointError(
                    f"{self._url(path)}: garbage reply: {self._redact(str(exc))[:300]}"
                ) from None

    async def _ensure_model(self) -> None:
        """Fail early, and clearly, when the server does not serve `model` (checked once)."""
        if not self.check_model or self._model_checked:
            return
        try:
            page = await self._with_retries(self.client.models.list, "models")
        except EndpointError as exc:
            if exc.status != 404:
                raise
            self._model_checked = True  # no /models route (some servers): the request will tell
            return
        served = [str(getattr(m, "id", "")) for m in getattr(page, "data", None) or []]
        if served and self.model not in served and f"{self.model}:latest" not in served:
            shown = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "")
            raise EndpointError(
                f"{self._url('models')}: model '{self.model}' not found; the server serves: {shown}",
                404,
            )
        self._model_checked = True

    # ---- replies ----------------------------------------------------------------------------

    def _garbage(self, what: str, reply: object) -> EndpointError:
        return EndpointError(
            f"{self._url()}: empty or garbage reply ({what}): {self._redact(repr(reply))[:200]}"
        )

    def _choice_text(self, choice: Any, reply: object) -> str:
        if self.endpoint_kind == "chat":
            message = getattr(choice, "message", None)
            content = getattr(message, "content", None) if message is not None else None
            if message is None or not isinstance(content, (str, type(None))):
                raise self._garbage("a choice without a message", reply)
            return content or ""  # None: a refusal or a tool call, no text
        text = getattr(choice, "text", None)
        if not isinstance(text, str):
            raise self._garbage("a choice without text", reply)
        return text

    def _candidates(self, reply: object, stops: list[str], latency: float) -> list[Candidate]:
        if isinstance(reply, (str, bytes)):  # the SDK hands back non-JSON bodies as text
            raise self._garbage("not JSON", reply)
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise self._garbage("no choices", reply)
        choices = sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)
        texts = [truncate_at_stop(self._choice_text(c, reply), stops)[0] for c in choices]
        usage = getattr(reply, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        total = int(getattr(usage, "completion_tokens", 0) or 0)
        # Usage is per request: with n > 1, share it out in proportion to each text's length.
        lengths = [max(len(t), 1) for t in texts]
        counts = [total * n // sum(lengths) for n in lengths]
        counts[0] += total - sum(counts)
        return [
            Candidate(
                text=text,
                prompt_tokens=prompt_tokens,
                completion_tokens=count,
                latency_s=latency,
                finish_reason=str(getattr(choice, "finish_reason", None) or "stop"),
                extra={"endpoint": self.endpoint, "usage_shared": len(texts) > 1},
                logprob=_mean_logprob(choice),
            )
            for text, count, choice in zip(texts, counts, choices, strict=True)
        ]

    # ---- Backend ----------------------------------------------------------------------------

    def _create(self, params: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        if self.endpoint_kind == "chat":
            return lambda: self.client.chat.completions.create(**params)
        return lambda: self.client.completions.create(**params)

    async def complete(self, request: CompletionRequest) -> list[Candidate]:
        """Cancelling the awaiting task closes the HTTP request, so the server stops generating."""
        params = self.build_params(request)
        await self._ensure_model()
        start = time.perf_counter()
        reply = await self._with_retries(self._create(params), self._path)
        return self._candidates(reply, params.get("stop", []), time.perf_counter() - start)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """Yield text pieces of one candidate; closing the iterator closes the HTTP stream.

        A proxy that ignores `stream` answers with one JSON body: its text is used. A body that
        is neither, a reply without choices and a connection cut mid-reply are EndpointErrors
        that say which. The reply is cut at `reply_cap(max_tokens)` characters: a server that
        ignores max_tokens must not make this process parse megabytes."""
        params = {**self.build_params(replace(request, n=1)), "stream": True}
        await self._ensure_model()
        response = await self._with_retries(self._create(params), self._path)
        # Servers trim stops themselves, but not always the FIM control tokens: trim here too.
        trimmer = StopTrimmer(params.get("stop", []))
        cap = reply_cap(request.max_tokens)
        sent = 0
        http = getattr(response, "response", None)
        kind = str(http.headers.get("content-type", "")) if http is not None else ""
        pieces = (
            self._whole_reply(http, kind, cap)
            if http is not None and "event-stream" not in kind
            else self._stream_pieces(response)
        )
        try:
            async for piece in pieces:
                text = trimmer.feed(piece)[: cap - sent]
                if text:
                    sent += len(text)
                    yield text
                if trimmer.stopped:
                    return
                if sent >= cap:
                    log.warning("%s: reply cut at %d characters (max_tokens %d); the server "
                                "ignores max_tokens", self._url(), cap, request.max_tokens)
                    return
            tail = trimmer.flush()[: cap - sent]
            if tail:
                yield tail
        except openai.APIError as exc:
            if isinstance(exc, openai.APIConnectionError) and _connection_cause(exc) != "timed out":
                raise EndpointError(
                    f"{self._url()}: the connection closed mid-reply after {sent} characters "
                    f"({self._redact(_connection_cause(exc))[:200]})"
                ) from None
            raise self._error(exc, self._path, 1) from None
        except _HTTP_ERROR as exc:
            raise EndpointError(
                f"{self._url()}: the connection closed mid-reply after {sent} characters "
                f"({self._redact(str(exc) or type(exc).__name__)[:200]})"
            ) from None
        except (ValueError, TypeError) as exc:
            raise EndpointError(f"{self._url()}: garbage in the stream: {exc}"[:400]) from None
        finally:
            # Shielded: a second cancellation must not leave the connection open, or the server
            # keeps generating for nobody.
            await asyncio.shield(response.close())
            await pieces.aclose()

    async def _stream_pieces(self, response: Any) -> AsyncGenerator[str, None]:
        """The text of each server-sent event; an EndpointError when no event had a choice."""
        seen_choice = False
        async for chunk in response:
            for choice in getattr(chunk, "choices", None) or []:  # a usage-only chunk has none
                seen_choice = True
                if self.endpoint_kind == "chat":
                    piece = getattr(getattr(choice, "delta", None), "content", None)
                else:
                    piece = getattr(choice, "text", None)
                if piece:
                    yield str(piece)
        if not seen_choice:
            raise EndpointError(f"{self._url()}: the reply has no choices (an empty or missing "
                                "`choices` list in every streamed event)")

    async def _whole_reply(
        self, http: Any, kind: str, cap: int
    ) -> AsyncGenerator[str, None]:
        """The text of a reply that is not an event stream: a JSON completion (a proxy that
        ignored `stream`), else an EndpointError quoting what came instead."""
        body = b""
        async for data in http.aiter_bytes():
            body += data
            if len(body) > MAX_JSON_REPLY_BYTES:
                raise EndpointError(f"{self._url()}: a non-streamed reply over "
                                    f"{MAX_JSON_REPLY_BYTES // 1_000_000} MB ({kind or 'no type'})")
        try:
            payload = json.loads(body)
        except ValueError:
            shown = self._redact(body[:200].decode("utf-8", "replace"))
            raise EndpointError(
                f"{self._url()}: the reply is not JSON (HTTP {http.status_code}, "
                f"{kind or 'no content type'}): {shown!r}"
            ) from None
        if isinstance(payload, Mapping) and payload.get("error"):
            inner = payload["error"]
            message = inner.get("message") if isinstance(inner, Mapping) else inner
            raise EndpointError(f"{self._url()}: the server reported an error: "
                                f"{self._redact(str(message))[:300]}")
        choices = payload.get("choices") if isinstance(payload, Mapping) else None
        if not isinstance(choices, list) or not choices:
            raise EndpointError(f"{self._url()}: the reply has no choices (an empty or missing "
                                f"`choices` list): {self._redact(body[:200].decode('utf-8', 'replace'))!r}")
        first = choices[0] if isinstance(choices[0], Mapping) else {}
        message = first.get("message")
        text = message.get("content") if isinstance(message, Mapping) else first.get("text")
        log.info("%s answered a stream request with one JSON reply; using its text", self._url())
        yield str(text or "")[:cap]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _mean_logprob(choice: Any) -> float | None:
    """Mean token log-probability of a choice: chat's `logprobs.content[].logprob`, or the
    completions API's `logprobs.token_logprobs`; None when the server sent none."""
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is None:
        return None
    content = getattr(logprobs, "content", None)
    values = ([getattr(t, "logprob", None) for t in content] if isinstance(content, list)
              else getattr(logprobs, "token_logprobs", None))
    if not isinstance(values, list):
        return None
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(numbers) / len(numbers) if numbers else None
