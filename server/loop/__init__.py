"""The analyzer-guided feedback loop (LLMcoder's algorithm): prompts, search, logs."""

from collabcoder.server.loop.logs import readable_conversation, write_run_logs
from collabcoder.server.loop.search import (
    FeedbackLoop,
    IterationEvent,
    LoopConfig,
    LoopResult,
    Node,
    pick,
)

__all__ = ["FeedbackLoop", "IterationEvent", "LoopConfig", "LoopResult", "Node", "pick", "readable_conversation", "write_run_logs"]
