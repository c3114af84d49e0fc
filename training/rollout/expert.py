"""The expert model of `expert_edits` turns, reached through any OpenAI-compatible endpoint.

The config names the model (`magrpo.expert_model`); where it lives and its key come from the
environment, never from a file that gets committed or logged:

- `COLLABCODER_EXPERT_BASE_URL` and `COLLABCODER_EXPERT_API_KEY` win when set;
- otherwise the model's family picks a known endpoint and key variable (deepseek-* ->
  api.deepseek.com with DEEPSEEK_API_KEY, qwen* -> DashScope with DASHSCOPE_API_KEY,
  claude-* -> Anthropic's OpenAI-compatible API with ANTHROPIC_API_KEY, gpt-*/o* -> OpenAI
  with OPENAI_API_KEY).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from collabcoder.analyzers.protocol.program import FeedbackTask
from collabcoder.analyzers.protocol.prompts import expert_messages
from collabcoder.analyzers.protocol.replies import ExpertEdits, parse_expert_reply

log = logging.getLogger(__name__)

URL_VAR = "COLLABCODER_EXPERT_BASE_URL"
KEY_VAR = "COLLABCODER_EXPERT_API_KEY"

# (model name prefix, base URL, key variable)
KNOWN_EXPERTS: tuple[tuple[str, str, str], ...] = (
    ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    ("qwen", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY"),
    ("claude", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
    ("gpt", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("o1", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("o3", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("o4", "https://api.openai.com/v1", "OPENAI_API_KEY"),
)


class ExpertConfigError(ValueError):
    """The expert cannot be reached as configured; the message says what to set."""


@dataclass(frozen=True)
class ExpertEndpoint:
    model: str
    base_url: str
    api_key: str | None

    def __repr__(self) -> str:  # never print the key
        return f"ExpertEndpoint(model={self.model!r}, base_url={self.base_url!r})"


def resolve_expert(model: str, env: Mapping[str, str] | None = None) -> ExpertEndpoint:
    """Where `model` is served and its key, from the environment (see module docs)."""
    env = os.environ if env is None else env
    known = next((k for k in KNOWN_EXPERTS if model.lower().startswith(k[0])), None)
    url = env.get(URL_VAR) or (known[1] if known else None)
    if not url:
        raise ExpertConfigError(
            f"expert model {model!r}: no endpoint known for it; set {URL_VAR} to an "
            "OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1) and "
            f"{KEY_VAR} if it needs a key"
        )
    key = env.get(KEY_VAR) or (env.get(known[2]) if known else None)
    if key is None and known is not None and not env.get(URL_VAR):
        raise ExpertConfigError(
            f"expert model {model!r} on {url} needs an API key: set {known[2]} (or {KEY_VAR})"
        )
    return ExpertEndpoint(model, url, key)


class ExpertClient:
    """Asks the expert for edits on one joint program; synchronous for the rollout loop."""

    def __init__(
        self, endpoint: ExpertEndpoint, *, max_tokens: int = 1024, temperature: float = 0.3
    ) -> None:
        from collabcoder.server.backends.factory import make_backend

        self.endpoint = endpoint
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.calls = 0
        self.failures = 0
        self._backend = make_backend(
            "openai", endpoint.model, endpoint=endpoint.base_url, api_key=endpoint.api_key
        )
        self._loop = asyncio.new_event_loop()

    def review(
        self, task: FeedbackTask, aux_code: str, main_code: str, num_agents: int
    ) -> ExpertEdits:
        """The expert's edits; a failed call (after the backend's retries) gives no edits, so
        one flaky request does not end a long run. `failures` counts them."""
        from collabcoder.server.backends.base import BackendError, CompletionRequest

        messages = expert_messages(task, aux_code, main_code, num_agents)
        request = CompletionRequest(
            messages=tuple(messages), max_tokens=self.max_tokens, temperature=self.temperature
        )
        self.calls += 1
        try:
            (candidate, *_) = self._loop.run_until_complete(self._backend.complete(request))
        except BackendError as exc:
            self.failures += 1
            log.warning("expert %s failed: %s", self.endpoint.model, exc)
            return ExpertEdits(parsed=False)
        return parse_expert_reply(candidate.text)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._backend.aclose())
            self._loop.close()
