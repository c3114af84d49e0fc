"""make_backend: each kind, and clear errors for wrong kinds and options."""

from __future__ import annotations

from pathlib import Path

import pytest

from collabcoder.server.backends import Backend, make_backend
from collabcoder.server.backends.openai_backend import OpenAIBackend
from collabcoder.server.backends.transformers_backend import TransformersBackend


def test_openai_kind_passes_endpoint_key_and_options() -> None:
    backend = make_backend(
        "openai",
        "qwen2.5-coder:1.5b",
        "http://127.0.0.1:11434/v1",
        "k-1",
        endpoint_kind="completions",
    )
    assert isinstance(backend, OpenAIBackend) and isinstance(backend, Backend)
    assert backend.endpoint == "http://127.0.0.1:11434/v1"
    assert backend.endpoint_kind == "completions" and backend.fim is not None


def test_transformers_kind_builds_without_loading(tiny_model_dir: Path) -> None:
    backend = make_backend("transformers", str(tiny_model_dir), dtype="float32")
    assert isinstance(backend, TransformersBackend) and backend.dtype == "float32"


def test_unknown_kind_lists_the_kinds() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown backend kind 'opnai'.*openai, vllm, transformers.*did you mean 'openai'",
    ):
        make_backend("opnai", "m")


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown option 'timeout' for the 'openai' backend; did you mean 'timeout_s'",
    ):
        make_backend("openai", "m", timeout=3)


def test_in_process_kinds_take_no_endpoint() -> None:
    with pytest.raises(ValueError, match=r"takes no endpoint.*use kind='openai'"):
        make_backend("transformers", "smollm2-135m-instruct", endpoint="http://127.0.0.1:8000/v1")
