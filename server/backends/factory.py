"""One entry point from settings to a backend: `make_backend(kind, model, ...)`.

Backend modules are imported only for the kind asked for: only the transformers kind imports
torch, and nothing but the vLLM kind touches vLLM.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Literal, get_args

from collabcoder.server.backends.base import Backend

BackendKind = Literal["llamacpp", "openai", "vllm", "transformers"]
BACKEND_KINDS: tuple[str, ...] = get_args(BackendKind)


def _backend_class(kind: str) -> type:
    if kind == "llamacpp":
        from collabcoder.server.backends.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend
    if kind == "openai":
        from collabcoder.server.backends.openai_backend import OpenAIBackend

        return OpenAIBackend
    if kind == "vllm":
        from collabcoder.server.backends.vllm_backend import VLLMBackend

        return VLLMBackend
    from collabcoder.server.backends.transformers_backend import TransformersBackend

    return TransformersBackend


def _check_options(kind: str, cls: type, opts: dict[str, Any]) -> None:
    accepted = [
        name
        for name, p in inspect.signature(cls).parameters.items()
        if name not in ("model", "endpoint", "api_key")
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for name in opts:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(
                f"unknown option '{name}' for the '{kind}' backend; {hint}"
                f"it takes: {', '.join(accepted) or 'no options'}"
            )


def in_process_kind(model: str) -> str:
    """`auto`'s choice for a model run in this process: llama.cpp for a GGUF (a known short
    name such as the embedded default, a .gguf file, a folder with one), transformers for
    anything else (safetensors checkpoints, collab-train's output, hub ids)."""
    from collabcoder.server.backends.base import BackendError
    from collabcoder.server.backends.llamacpp_backend import gguf_file

    try:
        gguf_file(model)
    except BackendError:
        return "transformers"
    return "llamacpp"


def make_backend(
    kind: BackendKind | str,
    model: str,
    endpoint: str | None = None,
    api_key: str | None = None,
    **opts: Any,
) -> Backend:
    """Build a backend. `endpoint`/`api_key` belong to 'openai' only; `opts` go to the backend's
    constructor (e.g. endpoint_kind="completions", fim_template="starcoder2", dtype="float32").
    `auto` is 'openai' with an endpoint, else the in-process engine for the model
    (`in_process_kind`)."""
    if kind == "auto":
        kind = "openai" if endpoint is not None else in_process_kind(model)
    if kind not in BACKEND_KINDS:
        close = difflib.get_close_matches(str(kind), BACKEND_KINDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"unknown backend kind {kind!r}; expected one of: {', '.join(BACKEND_KINDS)} or auto"
            f"{hint}"
        )
    if not model:
        raise ValueError(f"the '{kind}' backend needs a model name")
    cls = _backend_class(kind)
    _check_options(kind, cls, opts)
    if kind == "openai":
        backend: Backend = cls(model, endpoint=endpoint, api_key=api_key, **opts)
        return backend
    if endpoint is not None or api_key is not None:
        raise ValueError(
            f"the '{kind}' backend runs the model in this process and takes no endpoint or API "
            "key; for a server (vllm serve, Ollama, llama.cpp, OpenAI) use kind='openai'"
        )
    backend = cls(model, **opts)
    return backend
