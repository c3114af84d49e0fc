"""Evaluation: pass@k and the paper's PassOrNot@k / Accuracy@k / MaxCoop@k over sample files."""

from collabcoder.training.evaluation.coop import MAX_COOP_SCORE, coop_score, magrpo_breakdown
from collabcoder.training.evaluation.passk import (
    DEFAULT_KS,
    accuracy_at_k,
    estimate_pass_at_k,
    max_coop_at_k,
    parse_ks,
    pass_or_not_at_k,
)
from collabcoder.training.evaluation.run import (
    EvaluationReport,
    Judge,
    SampleResult,
    TaskResult,
    default_out_path,
    evaluate_samples,
    judge_samples,
    per_sample_path,
    summarize,
    write_report,
)
from collabcoder.training.evaluation.samples import (
    Sample,
    SampleFileError,
    build_program,
    parse_sample,
    read_samples,
)

__all__ = [
    "DEFAULT_KS",
    "MAX_COOP_SCORE",
    "EvaluationReport",
    "Judge",
    "Sample",
    "SampleFileError",
    "SampleResult",
    "TaskResult",
    "accuracy_at_k",
    "build_program",
    "coop_score",
    "default_out_path",
    "estimate_pass_at_k",
    "evaluate_samples",
    "judge_samples",
    "magrpo_breakdown",
    "max_coop_at_k",
    "parse_ks",
    "parse_sample",
    "pass_or_not_at_k",
    "per_sample_path",
    "read_samples",
    "summarize",
    "write_report",
]
