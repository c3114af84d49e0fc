"""The feedback loop's settings, defined once.

The LSP engine, `collab-train loop complete` and the loop evaluation YAMLs all build this model,
so its limits and choices (the Literal types the CLI offers) live here and nowhere else. Building
one with a bad value raises pydantic's ValidationError, a ValueError.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from collabcoder.analyzers.protocol.prompts import SYSTEM_PROMPT, FeedbackVariant
from collabcoder.analyzers.static import DEFAULT_ANALYZERS
from collabcoder.server.loop.messages import PromptStyle

FeedbackFormat = Literal["analyzers", "level_feedback", "level_passed", "passed", "plain"]


class LoopConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    analyzers: tuple[str, ...] = DEFAULT_ANALYZERS
    max_iter: int = Field(default=3, ge=0, description="Feedback iterations at most.")
    n: int = Field(default=1, ge=1, description="Candidates per feedback request.")
    first_n: int | None = Field(
        default=None, ge=1, description="Candidates in the first, batched request (default: n)."
    )
    temperature: float = Field(default=0.7, ge=0.0)
    meta_temperature: float = Field(  # inf: uniform over the frontier
        default=0.0, ge=0.0, description="Which conversation to expand: 0 the best, higher more random."
    )
    backtracking: bool = Field(
        default=True, description="May return to earlier conversations when a branch fails."
    )
    feedback_variant: FeedbackVariant = Field(
        default="coworker", description="coworker (one conversation) | separate."
    )
    feedback_format: FeedbackFormat = "analyzers"
    prompt_style: PromptStyle = Field(
        default="chat", description="chat (instruct models) | fim (base coder models)."
    )
    prefill: bool = True  # continue a prefilled reply where the backend supports it
    system_prompt: str = SYSTEM_PROMPT
    max_tokens: int = Field(default=256, ge=1)
    stop: tuple[str, ...] = ()
    require_unique: bool = Field(
        default=True, description="Resample when a candidate repeats an earlier one."
    )
    max_retries: int = Field(default=5, ge=0)
    delta_temperature: float = 0.2
    max_temperature: float = 2.0
    factor_n: int = 2
    max_n: int = 32
    time_budget_s: float | None = Field(
        default=None, gt=0, description="Wall-clock seconds for the whole loop."
    )
    seed: int | None = None
