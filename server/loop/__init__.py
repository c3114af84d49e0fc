"""The analyzer-guided feedback loop (LLMcoder's algorithm): prompts, search, logs."""

from collabcoder.server.loop.config import LoopConfig
from collabcoder.server.loop.logs import readable_conversation, write_run_logs
from collabcoder.server.loop.search import (
    FeedbackLoop,
    Iteration,
    LoopResult,
    Node,
    pick,
)

__all__ = [
    "FeedbackLoop",
    "Iteration",
    "LoopConfig",
    "LoopResult",
    "Node",
    "pick",
    "readable_conversation",
    "write_run_logs",
]
