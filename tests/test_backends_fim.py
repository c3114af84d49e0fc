"""FIM templates: the exact prompts per model family, detection from model names, the registry,
and how OpenAIBackend turns a request into endpoint parameters (no network)."""

from __future__ import annotations

import pytest

from collabcoder.server.backends import (
    BackendError,
    CompletionRequest,
    FimTemplate,
    build_fim_prompt,
    detect_fim_template,
    get_fim_template,
    register_fim_template,
    resolve_fim_template,
)
from collabcoder.server.backends.fim import FIM_TEMPLATES
from collabcoder.server.backends.openai_backend import OpenAIBackend

PREFIX = "def area(r):\n    return "
SUFFIX = "\n\nprint(area({'r': 2}))\n"  # braces: templates must not go through str.format


@pytest.mark.parametrize(
    ("name", "expected", "a_stop"),
    [
        (
            "qwen2.5-coder",
            f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>",
            "<|endoftext|>",
        ),
        ("starcoder2", f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>", "<file_sep>"),
        (
            "deepseek-coder",
            f"<｜fim▁begin｜>{PREFIX}<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>",
            "<|EOT|>",
        ),
        ("codellama", f"<PRE> {PREFIX} <SUF>{SUFFIX} <MID>", "<EOT>"),
    ],
)
def test_templates_build_the_documented_prompts(name: str, expected: str, a_stop: str) -> None:
    assert build_fim_prompt(PREFIX, SUFFIX, name) == expected
    assert a_stop in get_fim_template(name).stop


@pytest.mark.parametrize(
    ("model", "template"),
    [
        ("Qwen/Qwen2.5-Coder-1.5B", "qwen2.5-coder"),
        ("qwen2.5-coder:7b-base", "qwen2.5-coder"),  # an Ollama tag
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen2.5-coder"),
        ("bigcode/starcoder2-3b", "starcoder2"),
        ("Qwen/CodeQwen1.5-7B", "starcoder2"),
        ("deepseek-ai/deepseek-coder-1.3b-base", "deepseek-coder"),
        ("codellama/CodeLlama-7b-hf", "codellama"),
        ("/models/ckpt/codellama-13b-code", "codellama"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", None),
        ("gpt-4o-mini", None),
        ("Qwen/Qwen2.5-7B-Instruct", None),  # not a coder model: no FIM training
    ],
)
def test_detection_from_model_names(model: str, template: str | None) -> None:
    found = detect_fim_template(model)
    assert (found.name if found else None) == template


def test_resolve_choices() -> None:
    assert resolve_fim_template("bigcode/starcoder2-3b", None) is None
    assert resolve_fim_template("bigcode/starcoder2-3b", "none") is None
    assert resolve_fim_template("my-finetune", "deepseek-coder") is FIM_TEMPLATES["deepseek-coder"]
    with pytest.raises(
        KeyError, match=r"unknown FIM template 'qwen-coder'.*did you mean 'qwen2.5-coder'"
    ):
        resolve_fim_template("m", "qwen-coder")


def test_register_a_custom_template() -> None:
    custom = FimTemplate("mymodel", "<P>{prefix}<S>{suffix}<M>", ("<E>",), r"mymodel")
    register_fim_template(custom)
    try:
        assert detect_fim_template("org/MyModel-1B") is custom
        with pytest.raises(ValueError, match="already registered"):
            register_fim_template(custom)
        with pytest.raises(ValueError, match="needs"):
            register_fim_template(FimTemplate("broken", "<P>{prefix}", (), "x"), replace=True)
    finally:
        del FIM_TEMPLATES["mymodel"]


def test_openai_params_for_fim_chat_and_native_suffix() -> None:
    coder = OpenAIBackend(
        "Qwen/Qwen2.5-Coder-1.5B", "http://127.0.0.1:1/v1", endpoint_kind="completions"
    )
    params = coder.build_params(
        CompletionRequest(prompt=PREFIX, suffix=SUFFIX, stop=("\n\n",), n=2)
    )
    assert params["prompt"] == build_fim_prompt(PREFIX, SUFFIX, "qwen2.5-coder")
    assert "suffix" not in params  # vLLM would ignore it anyway
    assert params["stop"][0] == "\n\n" and "<|fim_prefix|>" in params["stop"]
    assert params["n"] == 2 and params["model"] == "Qwen/Qwen2.5-Coder-1.5B"

    # No template known: the server gets the suffix and applies its own (llama.cpp, OpenAI).
    other = OpenAIBackend("gpt-3.5-turbo-instruct", endpoint_kind="completions")
    params = other.build_params(CompletionRequest(prompt=PREFIX, suffix=SUFFIX))
    assert params["prompt"] == PREFIX and params["suffix"] == SUFFIX and "stop" not in params
    assert other.endpoint == "https://api.openai.com/v1"

    chat = OpenAIBackend("m", "http://127.0.0.1:1/v1/", extra_body={"top_k": 20})
    params = chat.build_params(CompletionRequest(prompt="hi", seed=3))
    assert params["messages"] == [{"role": "user", "content": "hi"}]
    assert params["seed"] == 3 and params["extra_body"] == {"top_k": 20}
    with pytest.raises(BackendError, match="cannot fill in the middle"):
        chat.build_params(CompletionRequest(prompt="a", suffix="b"))
    with pytest.raises(BackendError, match="takes a prompt, not chat messages"):
        coder.build_params(CompletionRequest(messages=({"role": "user", "content": "x"},)))
