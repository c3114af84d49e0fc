"""The `collab.*` settings, parsed once into typed, defaulted options.

The same camelCase keys arrive in `initializationOptions` and in the `workspace/configuration`
answer for section `collab` (docs/protocol.md). A bad value never stops the server: it is
replaced by its default and reported as a configuration error that names the key, the value and
what would be right.

    settings, errors = parse_settings({"backend": "openai", "endpointUrl": "http://h/v1"})
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from collabcoder.analyzers.static import DEFAULT_ANALYZERS, canonical_name
from collabcoder.server.backends.embedded_model import EMBEDDED_DEFAULT
from collabcoder.server.backends.fim import get_fim_template

SECTION = "collab"
BackendName = Literal["llamacpp", "transformers", "openai", "vllm"]
# Keys the client may send that are not server settings (secrets, extension-only options).
_NOT_SETTINGS = frozenset({"apiKey", "server", "trace"})


class InlineCompletionsSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = True


class Settings(BaseModel):
    """Server settings; attribute names are snake_case, keys on the wire camelCase."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    backend: BackendName = "llamacpp"
    endpoint_url: str = ""
    model: str = EMBEDDED_DEFAULT
    fim_template: str = "auto"
    analyzers: tuple[str, ...] = DEFAULT_ANALYZERS
    max_iterations: int = Field(default=3, ge=0, le=50)
    latency_budget_ms: int = Field(default=4000, ge=0, le=600_000)
    debounce_ms: int = Field(default=150, ge=0, le=10_000)
    enabled_languages: tuple[str, ...] = ("python",)
    inline_completions: InlineCompletionsSettings = Field(
        default_factory=InlineCompletionsSettings
    )
    python_path: str = ""
    # Server-only extra (not in the extension's settings UI): cap on generated tokens per
    # request; 0 picks per mode (single line 48, multi-line 128, feedback runs 256).
    max_tokens: int = Field(default=0, ge=0, le=8192)

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the model name is empty")
        return value.strip()

    @field_validator("fim_template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        if value.lower() not in ("auto", "none"):
            try:
                get_fim_template(value)
            except KeyError as exc:  # pydantic only reports ValueError/AssertionError
                raise ValueError(str(exc.args[0])) from None
        return value.lower()

    @field_validator("analyzers")
    @classmethod
    def _known_analyzers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(canonical_name(name) for name in value))

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


KNOWN_KEYS: tuple[str, ...] = tuple(
    field.alias or name for name, field in Settings.model_fields.items()
)


def _expand_dotted(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`{"inlineCompletions.enabled": false}` -> `{"inlineCompletions": {"enabled": false}}`:
    VS Code hands out nested objects, but a client may flatten them."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        head, dot, rest = str(key).partition(".")
        if dot and head in KNOWN_KEYS:
            nested = out.setdefault(head, {})
            if isinstance(nested, dict):
                nested[rest] = value
        else:
            out[str(key)] = value
    return out


def _error_text(key: str, value: object, message: str, default: object) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"invalid setting '{SECTION}.{key}' = {shown}: {message}; using the default {default!r}"


def parse_settings(raw: object) -> tuple[Settings, list[str]]:
    """Settings from a client payload, and one message per configuration error.

    Unknown keys are ignored, except near-misses of known ones ("did you mean"). Each invalid
    value falls back to its default; the others are kept.
    """
    if raw is None:
        return Settings(), []
    if not isinstance(raw, Mapping):
        return Settings(), [
            f"the '{SECTION}' settings must be an object, got {type(raw).__name__}; "
            "using the defaults"
        ]
    data = {k: v for k, v in _expand_dotted(raw).items() if k not in _NOT_SETTINGS}
    errors: list[str] = []
    for key in [k for k in data if k not in KNOWN_KEYS]:
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.75)
        if close:
            errors.append(
                f"unknown setting '{SECTION}.{key}'; did you mean '{SECTION}.{close[0]}'?"
            )
        del data[key]
    defaults = Settings().to_wire()
    for _ in range(len(KNOWN_KEYS) + 1):
        try:
            return Settings.model_validate(data), errors
        except ValidationError as exc:
            bad: set[str] = set()
            for err in exc.errors():
                key = str(err["loc"][0]) if err["loc"] else ""
                if key not in data or key in bad:
                    continue
                bad.add(key)
                errors.append(_error_text(key, data[key], str(err["msg"]), defaults.get(key)))
            if not bad:  # an error we cannot pin on one key: give up on the whole payload
                errors.append(f"invalid '{SECTION}' settings: {exc}; using the defaults")
                return Settings(), errors
            for key in bad:
                del data[key]
    return Settings(), errors
