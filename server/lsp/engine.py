"""The completion engine: the settings, held here once, and what they build (one model or a
team of agents behind the `Completer` interface); a document position -> a site -> a suggestion
or a feedback run; the analyzer round, with how long one takes.

Every model call streams: cancelling the request closes the stream, and with it the HTTP
connection (the server stops generating) or the in-process generation thread.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lsprotocol import types
from pygls.workspace import TextDocument

from collabcoder.analyzers.static import AnalyzerResult, run_analyzers, warm_up
from collabcoder.server.backends.base import Backend, BackendError
from collabcoder.server.backends.factory import make_backend
from collabcoder.server.backends.fim import resolve_fim_template
from collabcoder.server.backends.llamacpp_backend import LlamaCppBackend
from collabcoder.server.backends.transformers_backend import TransformersBackend
from collabcoder.server.lsp.completers import (
    MULTI_MAX_TOKENS,
    Completer,
    FeedbackOutcome,
    ModelCompleter,
    OnIteration,
    TeamCompleter,
)
from collabcoder.server.lsp.context import (
    CursorSite,
    EditorEnvironment,
    analysis_context,
    document_path,
    make_site,
)
from collabcoder.server.lsp.settings import Settings
from collabcoder.server.lsp.team import AgentTeam

log = logging.getLogger(__name__)

HTTP_CONTEXT_TOKENS = 4096  # the endpoint's context is unknown: a size every coder model has
INPROCESS_CONTEXT_CAP = 2048  # prompt tokens cost CPU time in-process: keep the window modest
# llama.cpp evaluates a Q4 prompt at ~250 tokens/s on 2 cores (3x slower than torch bf16; its
# decoding is 3x faster): a smaller window, and the KV cache keeps what did not change.
LLAMACPP_CONTEXT_CAP = 512
PROMPT_OVERHEAD_TOKENS = 256  # system prompt, chat template, FIM markers
FEEDBACK_RUN_CAP_S = 300.0


def model_backend(settings: Settings, api_key: str | None) -> tuple[Backend, bool]:
    """The backend the settings name (no weights loaded yet), and whether it takes FIM
    prompts. Raises ValueError/BackendError/ImportError for settings that cannot work."""
    fim = resolve_fim_template(settings.model, settings.fim_template)
    if settings.backend == "openai":
        backend = make_backend(
            "openai", settings.model, endpoint=settings.endpoint_url or None,
            api_key=api_key or None, endpoint_kind="completions" if fim else "chat",
            fim_template=settings.fim_template, timeout_s=30.0, connect_timeout_s=3.0,
            max_retries=1, backoff_s=0.2,
        )  # fmt: skip
    else:
        backend = make_backend(settings.backend, settings.model, fim_template=settings.fim_template)
    return backend, fim is not None


class Engine:
    """Owns the settings and the completer built from them; stateless per request otherwise."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.completer: Completer | None = None
        self.tokenizer: object = None
        self.context_tokens = HTTP_CONTEXT_TOKENS
        self.loaded = False
        self.model_calls = 0
        self.analyzer_estimate_s = 1.0  # a warm round; updated from real rounds
        self._key: tuple[object, ...] | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.completer.label if self.completer is not None else self.settings.model

    @property
    def backend_name(self) -> str:
        return self.completer.backend_name if self.completer is not None else self.settings.backend

    def _identity(self, settings: Settings, api_key: str | None) -> tuple[object, ...]:
        key = api_key if settings.backend == "openai" else None  # in-process: no key, no reload
        return (settings.backend, settings.endpoint_url, settings.model, settings.fim_template,
                key)

    def needs_rebuild(self, settings: Settings, api_key: str | None) -> bool:
        return self._key != self._identity(settings, api_key)

    def build(self, settings: Settings, api_key: str | None) -> Completer | None:
        """Make the completer for `settings` (no weights loaded yet): a team for an agents
        folder, else one model. Returns the one it replaces. Raises ValueError/BackendError/
        ImportError/ManifestError/OSError for settings that cannot work (then call `forget`)."""
        completer: Completer
        if AgentTeam.is_team(settings.model):
            team = AgentTeam(settings.model)
            solo = ModelCompleter(self, team.main, "chat", "transformers", team.describe())
            completer = TeamCompleter(self, team, solo)
        else:
            backend, fim = model_backend(settings, api_key)
            completer = ModelCompleter(self, backend, "fim" if fim else "chat", settings.backend,
                                       settings.model)
        old, self.completer = self.completer, completer
        self.settings = settings
        self.tokenizer, self.loaded = None, False
        self.context_tokens = HTTP_CONTEXT_TOKENS
        self._key = self._identity(settings, api_key)
        return old

    def forget(self, settings: Settings) -> None:
        """After a failed build: no completer, and the next settings try again."""
        self.settings = settings
        self.completer, self._key, self.loaded = None, None, False

    async def load(self) -> None:
        """Load in-process weights (in a thread) and read the tokenizer and context size."""
        completer = self.completer
        if completer is None:
            return
        backend = completer.backend
        await completer.load()
        if completer is not self.completer:
            return  # the settings changed meanwhile
        if isinstance(backend, TransformersBackend):
            lm = await asyncio.to_thread(backend._loaded)  # already loaded: a cache lookup
            positions = int(getattr(lm.model.config, "max_position_embeddings", 2048) or 2048)
            self.tokenizer = lm.tokenizer
            self.context_tokens = max(
                256,
                min(INPROCESS_CONTEXT_CAP, positions - MULTI_MAX_TOKENS - PROMPT_OVERHEAD_TOKENS),
            )
        elif isinstance(backend, LlamaCppBackend):
            positions = await asyncio.to_thread(backend.context_window)
            self.context_tokens = max(
                256, min(LLAMACPP_CONTEXT_CAP, positions - MULTI_MAX_TOKENS - PROMPT_OVERHEAD_TOKENS)
            )
        self.loaded = True

    async def aclose(self) -> None:
        completer = self.completer
        self.completer, self._key, self.loaded = None, None, False
        if completer is not None:
            await completer.aclose()

    # ---- requests ---------------------------------------------------------------------------

    def site(self, doc: TextDocument, position: types.Position,
             around: tuple[str, str] | None = None) -> CursorSite:
        """The site at a client position, with a prompt window that fits the model. `around`:
        the (prefix, suffix) split when the caller already made it."""
        return make_site(doc, position, self.context_tokens, self.tokenizer, around)

    def ready(self) -> Completer:
        """The built completer; a request before any usable settings is a backend error."""
        if self.completer is None:
            raise BackendError("no backend: the settings did not produce a usable one")
        return self.completer

    async def analyze(self, site: CursorSite, env: EditorEnvironment, completion: str,
                      budget_s: float | None) -> tuple[list[AnalyzerResult], float]:
        """One round of the settings' analyzers on `completion` at `site`; (results, seconds)."""
        started = time.perf_counter()
        ctx = analysis_context(site, env, completion)
        results = await run_analyzers(ctx, self.settings.analyzers, budget_s)
        elapsed = time.perf_counter() - started
        if not any(r.infra_error for r in results):  # a timed-out round says nothing of speed
            self.analyzer_estimate_s = 0.7 * self.analyzer_estimate_s + 0.3 * elapsed
        return results, elapsed

    async def warm_up(self, doc: TextDocument, env: EditorEnvironment) -> None:
        """Run the analyzers once on the whole document: a cold mypy build would eat the first
        requests' budgets. Failures are only logged (the real rounds report them)."""
        site = CursorSite(doc.uri, document_path(doc), types.Position(line=0, character=0),
                          doc.source, "", "multi")
        try:
            await warm_up(analysis_context(site, env), self.settings.analyzers)
        except Exception as exc:
            log.info("analyzer warm-up failed: %s", exc)

    async def run_feedback(self, site: CursorSite, env: EditorEnvironment, iterations: int,
                           on_iteration: OnIteration | None) -> FeedbackOutcome:
        """A feedback run: `iterations` feedback expansions (or team turns) after the first
        candidate, within `FEEDBACK_RUN_CAP_S`."""
        deadline = time.monotonic() + FEEDBACK_RUN_CAP_S
        return await self.ready().feedback(site, env, iterations, on_iteration, deadline)
