"""Fill-in-the-middle prompt templates for base coder models.

We build FIM prompts ourselves because OpenAI-compatible servers disagree on `suffix`: vLLM
ignores it, llama.cpp and Ollama apply their own templates, OpenAI only honours it for one
legacy model. With the template applied client-side, any `/v1/completions` endpoint serving a
coder model fills the hole the same way.

    template = detect_fim_template("Qwen/Qwen2.5-Coder-1.5B")   # -> the qwen2.5-coder template
    prompt = template.build(prefix, suffix)
    stop = template.stop                                        # the template's control tokens
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FimTemplate:
    """`format` has `{prefix}` and `{suffix}` placeholders; `stop` ends the middle section."""

    name: str
    format: str
    stop: tuple[str, ...]
    # Regex matched (case-insensitively) against a model name by `detect_fim_template`.
    model_pattern: str

    def build(self, prefix: str, suffix: str) -> str:
        # str.replace, not str.format: code is full of braces.
        return self.format.replace("{prefix}", prefix, 1).replace("{suffix}", suffix, 1)


_QWEN = FimTemplate(
    name="qwen2.5-coder",
    format="<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    stop=(
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|im_end|>",
    ),
    model_pattern=r"qwen[\d.]*[-_ ]?coder",
)
_STARCODER = FimTemplate(
    name="starcoder2",
    format="<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    stop=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>"),
    model_pattern=r"starcoder|santacoder|codeqwen",  # CodeQwen1.5 uses these tokens too
)
_DEEPSEEK = FimTemplate(
    name="deepseek-coder",
    format="<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
    stop=("<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<|EOT|>"),
    model_pattern=r"deepseek[-_ ]?coder",
)
# Meta's infilling format: the spaces around the markers are part of what the model was trained on.
_CODELLAMA = FimTemplate(
    name="codellama",
    format="<PRE> {prefix} <SUF>{suffix} <MID>",
    stop=("<EOT>", "</s>", "<PRE>", "<SUF>", "<MID>"),
    model_pattern=r"code[-_ ]?llama",
)

FIM_TEMPLATES: dict[str, FimTemplate] = {
    t.name: t for t in (_QWEN, _STARCODER, _DEEPSEEK, _CODELLAMA)
}


def register_fim_template(template: FimTemplate, *, replace: bool = False) -> None:
    """Add a template (e.g. for a fine-tuned model with its own tokens); detection tries it last."""
    if "{prefix}" not in template.format or "{suffix}" not in template.format:
        raise ValueError(
            f"FIM template '{template.name}' needs {{prefix}} and {{suffix}} in its format"
        )
    key = template.name.lower()
    if key in FIM_TEMPLATES and not replace:
        raise ValueError(f"FIM template '{template.name}' is already registered; pass replace=True")
    FIM_TEMPLATES[key] = template


def get_fim_template(name: str) -> FimTemplate:
    try:
        return FIM_TEMPLATES[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), FIM_TEMPLATES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KeyError(
            f"unknown FIM template '{name}'; known: {', '.join(sorted(FIM_TEMPLATES))}{hint}"
        ) from None


def detect_fim_template(model: str) -> FimTemplate | None:
    """The template a model name implies (hub id, Ollama tag or path), or None if none matches."""
    for template in FIM_TEMPLATES.values():
        if re.search(template.model_pattern, model, flags=re.IGNORECASE):
            return template
    return None


def resolve_fim_template(model: str, choice: str | None = "auto") -> FimTemplate | None:
    """`choice` is "auto" (detect from `model`), None / "none" (no template), or a template name."""
    if choice is None or choice.lower() == "none":
        return None
    if choice.lower() == "auto":
        return detect_fim_template(model)
    return get_fim_template(choice)


def build_fim_prompt(prefix: str, suffix: str, template: FimTemplate | str) -> str:
    t = get_fim_template(template) if isinstance(template, str) else template
    return t.build(prefix, suffix)
