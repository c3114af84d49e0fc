"""Static analyzers of the feedback loop: syntax, mypy, signature, hallucination, tests, score.

    results = await run_analyzers(AnalysisContext(prefix, completion, suffix, ...),
                                  ["syntax", "mypy", "signature", "hallucination"])

Heavy modules (mypy, jedi) load on the first run, not on import.
"""

from collabcoder.analyzers.static.base import (
    Analyzer,
    AnalyzerTimeout,
    AnalyzerUnavailable,
    BlockingAnalyzer,
)
from collabcoder.analyzers.static.context import AnalysisContext
from collabcoder.analyzers.static.llm_score import Reviewer, ReviewerBackend, ScoreAnalyzer
from collabcoder.analyzers.static.registry import (
    UnknownAnalyzerError,
    available_analyzers,
    canonical_name,
    get_analyzer,
    register_analyzer,
    unregister_analyzer,
)
from collabcoder.analyzers.static.result import (
    AnalyzerKind,
    AnalyzerResult,
    Diagnostic,
    Evidence,
    Severity,
    combined_feedback,
    evidence_first_score,
    verdict_words,
)
from collabcoder.analyzers.static.runner import (
    DEFAULT_ANALYZERS,
    resolve_analyzers,
    run_analyzers,
    run_analyzers_sync,
    warm_up,
)

__all__ = [
    "DEFAULT_ANALYZERS",
    "AnalysisContext",
    "Analyzer",
    "AnalyzerKind",
    "AnalyzerResult",
    "AnalyzerTimeout",
    "AnalyzerUnavailable",
    "BlockingAnalyzer",
    "Diagnostic",
    "Evidence",
    "Reviewer",
    "ReviewerBackend",
    "ScoreAnalyzer",
    "Severity",
    "UnknownAnalyzerError",
    "available_analyzers",
    "canonical_name",
    "combined_feedback",
    "evidence_first_score",
    "get_analyzer",
    "register_analyzer",
    "resolve_analyzers",
    "run_analyzers",
    "run_analyzers_sync",
    "unregister_analyzer",
    "verdict_words",
    "warm_up",
]
