"""OpenAI's wire format and our `Backend` types: request JSON to a `CompletionRequest`, candidates
to reply JSON and stream chunks, errors in OpenAI's shape. No HTTP here: `openai_server.py`
serves these over Starlette.

Written by hand because no library does this direction: the `openai` package types the client's
side only (its request params are TypedDicts that validate nothing), and the mapping to our
`CompletionRequest` is ours anyway. The messages are what clients see, so each names the field.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from collabcoder.server.backends.base import Candidate, CompletionRequest

MAX_N = 16
DONE_EVENT = b"data: [DONE]\n\n"


class ApiError(Exception):
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


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    # bool is an int subclass: `"n": true` is a mistake, not 1.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ApiError(
            400, f"'{name}' must be {expected}, got {json.dumps(value)[:60]}", param=name
        )
    return value


def served_model(body: dict[str, Any], served_names: list[str]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required", param="model")
    if model not in served_names:
        raise ApiError(
            404,
            f"The model '{model}' does not exist; this server serves: {', '.join(served_names)}",
            type_="NotFoundError",
            param="model",
            code="model_not_found",
        )
    return model


def _message_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(str(p) for p in parts)
    raise ApiError(
        400, "message content must be a string or a list of text parts", param="messages"
    )


def _sampling(body: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    n = field(body, "n", (int,), 1)
    if not 1 <= n <= MAX_N:
        raise ApiError(400, f"'n' must be between 1 and {MAX_N}, got {n}", param="n")
    temperature = float(field(body, "temperature", (int, float), 1.0))
    top_p = float(field(body, "top_p", (int, float), 1.0))
    max_tokens = field(
        body,
        "max_completion_tokens",
        (int,),
        field(body, "max_tokens", (int,), default_max_tokens),
    )
    if max_tokens < 1:
        raise ApiError(400, f"'max_tokens' must be >= 1, got {max_tokens}", param="max_tokens")
    stop = field(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else stop
    if not all(isinstance(s, str) for s in stops):
        raise ApiError(400, "'stop' must be a string or a list of strings", param="stop")
    return {
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "stop": tuple(s for s in stops if s),
        "seed": field(body, "seed", (int,), None),
    }


def completion_request(
    body: dict[str, Any], chat: bool, default_max_tokens: int
) -> tuple[CompletionRequest, bool]:
    """The request a /v1/chat/completions (chat) or /v1/completions body asks for, and whether
    the reply echoes the prompt."""
    sampling = _sampling(body, default_max_tokens)
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list", param="messages")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise ApiError(400, "each message needs a string 'role'", param="messages")
        turns = tuple(
            {"role": m["role"], "content": _message_text(m.get("content"))} for m in messages
        )
        return CompletionRequest(messages=turns, **sampling), False
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be a string (one prompt per request)", param="prompt")
    suffix = field(body, "suffix", (str,), None)
    echo = bool(field(body, "echo", (bool,), False))
    return CompletionRequest(prompt=prompt, suffix=suffix, **sampling), echo


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "collabcoder"}


def reply_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def _finish_reason(candidate: Candidate) -> str:
    return candidate.finish_reason if candidate.finish_reason in ("stop", "length") else "stop"


def reply(candidates: list[Candidate], model: str, chat: bool, prefix: str = "") -> dict[str, Any]:
    """A non-streamed reply; `prefix` is the echoed prompt of /v1/completions."""
    completion_tokens = sum(c.completion_tokens for c in candidates)
    prompt_tokens = candidates[0].prompt_tokens if candidates else 0
    choices: list[dict[str, Any]] = []
    for i, c in enumerate(candidates):
        content: dict[str, Any] = (
            {"message": {"role": "assistant", "content": c.text}}
            if chat
            else {"text": prefix + c.text}
        )
        choices.append(
            {"index": i, **content, "logprobs": None, "finish_reason": _finish_reason(c)}
        )
    return {
        "id": reply_id(chat),
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


def sse(payload: object) -> bytes:
    """One server-sent event."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunk(
    ident: str,
    created: int,
    model: str,
    chat: bool,
    index: int,
    text: str | None,
    finish: str | None,
    first: bool = False,
) -> bytes:
    """One streamed piece of choice `index` as an event; chat's first one carries the role."""
    if chat:
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
    else:
        choice = {"index": index, "text": text or "", "finish_reason": finish}
    return sse(
        {
            "id": ident,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
        }
    )
