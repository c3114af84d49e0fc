"""The feedback loop over real backends (a tiny local model, the embedded SmolLM2) and real
analyzers: search, selection, backtracking, resampling of repeats, budgets, logs."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from collabcoder.analyzers.static import AnalysisContext
from collabcoder.analyzers.testcases import extract_assert_suite
from collabcoder.server.backends.openai_backend import OpenAIBackend
from collabcoder.server.backends.transformers_backend import TransformersBackend
from collabcoder.server.loop import (
    FeedbackLoop,
    Iteration,
    LoopConfig,
    Node,
    pick,
    write_run_logs,
)
from collabcoder.server.loop.messages import continuation_from_reply, trim_to_block

PREFIX = "def add(a: int, b: int) -> int:\n    "
FAST = ("syntax",)  # tiny-model output rarely parses; other analyzers are skipped after it


def _node(node_id: str, score_results: int) -> Node:
    from collabcoder.analyzers.static import AnalyzerResult

    results = [AnalyzerResult("x", "score", True, 1.0, "") for _ in range(score_results)]
    return Node(node_id, None, (), "", "", results)


def test_pick_greedy_uniform_and_softmax() -> None:
    low, high = _node("low", 1), _node("high", 3)
    rng = random.Random(0)
    assert pick([low, high], 0.0, rng) is high
    uniform = Counter(pick([low, high], math.inf, rng).id for _ in range(2000))
    assert 850 < uniform["low"] < 1150
    soft = Counter(pick([low, high], 1.0, rng).id for _ in range(2000))
    # scores 2 and 4 (passing adds 1): P(low) = 1 / (1 + e^2) ~ 0.12
    assert 150 < soft["low"] < 350


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_model_dir), dtype="float32")


async def test_loop_with_tiny_model_returns_best_and_logs(
    tiny_backend: TransformersBackend, tmp_path: Path
) -> None:
    events: list[Iteration] = []
    config = LoopConfig(analyzers=FAST, max_iter=2, n=2, temperature=1.0, max_tokens=8, seed=1)
    result = await FeedbackLoop(tiny_backend, config).run(
        AnalysisContext(prefix=PREFIX, completion=""), on_iteration=events.append
    )
    assert result.best is not None and result.nodes
    assert len(events) == len(result.nodes)
    assert result.tokens_generated > 0
    assert result.stop_reason in {"passed", "static_only", "max_iter"}
    assert not result.verified  # only syntax ran: nothing behavioural, never verified
    if result.stop_reason == "max_iter":
        assert result.iterations == 2
        assert result.best.score == max(n.score for n in result.nodes)
    txt, js = write_run_logs(result, tmp_path, "run")
    assert "[candidates]" in txt.read_text()
    assert json.loads(js.read_text())["n_tokens_generated"] == result.tokens_generated


async def test_repeated_completions_are_resampled_hotter(tiny_backend: TransformersBackend) -> None:
    # Greedy decoding of the tiny model gives an empty continuation: useless, like a repeat, so
    # the loop must resample with more heat and a larger n.
    config = LoopConfig(analyzers=FAST, max_iter=1, temperature=0.0, max_tokens=2,
                        max_retries=3, seed=3)
    result = await FeedbackLoop(tiny_backend, config).run(AnalysisContext(PREFIX, ""))
    assert any("only empty or repeated completions" in line for line in result.log)
    assert any("temperature 0.20, n 2" in line for line in result.log)
    completions = [n.completion.strip() for n in result.nodes]
    assert len(completions) == len(set(completions))


async def test_without_backtracking_expands_only_the_latest_children(
    tiny_backend: TransformersBackend,
) -> None:
    config = LoopConfig(analyzers=FAST, max_iter=3, n=2, temperature=1.2, max_tokens=6,
                        backtracking=False, meta_temperature=math.inf, seed=7)
    result = await FeedbackLoop(tiny_backend, config).run(AnalysisContext(PREFIX, ""))
    expanded = [n for n in result.nodes if n.expanded]
    for earlier, later in itertools.pairwise(expanded):
        assert later.parent is earlier


async def test_unreachable_backend_is_a_reported_result() -> None:
    backend = OpenAIBackend("m", endpoint="http://127.0.0.1:9/v1", max_retries=0,
                            check_model=False)
    result = await FeedbackLoop(backend, LoopConfig(max_iter=2)).run(AnalysisContext(PREFIX, ""))
    assert result.stop_reason == "backend_error"
    assert result.best is None and result.completion == ""
    assert "127.0.0.1:9" in result.errors[0]


async def test_wall_clock_budget_stops_the_loop(tiny_backend: TransformersBackend) -> None:
    config = LoopConfig(analyzers=FAST, max_iter=50, n=1, temperature=1.0, max_tokens=4,
                        time_budget_s=1.5, seed=2)
    result = await FeedbackLoop(tiny_backend, config).run(AnalysisContext(PREFIX, ""))
    assert result.iterations < 50
    assert result.time_s < 15


async def test_turn_protocol_feedback_format(tiny_backend: TransformersBackend) -> None:
    """With tests and an entry point, `level_feedback` texts (shared with training) are sent."""
    tests = extract_assert_suite("def check(candidate):\n    assert candidate(1, 2) == 3\n", "add")
    config = LoopConfig(analyzers=("syntax", "tests"), max_iter=1, n=1, temperature=1.0,
                        max_tokens=6, feedback_format="level_feedback", seed=5)
    site = AnalysisContext(prefix=PREFIX, completion="", tests=tests)
    result = await FeedbackLoop(tiny_backend, config).run(site, entry_point="add")
    assert not result.passed  # a random model does not add numbers
    children = [n for n in result.nodes if n.parent is not None]
    assert children, result.log
    feedback_turn = children[0].messages[-2]["content"]
    assert "syntax" in feedback_turn.lower() or "tests" in feedback_turn.lower()
    assert "The completion you provided" not in feedback_turn  # not the analyzers' format


def test_a_reply_that_only_restates_the_typed_line_adds_nothing() -> None:
    prefix = 'def square(x: int) -> int:\n    """Return x squared."""\n    return '
    reply = '```python\ndef square(x: int) -> int:\n    """Return x squared."""\n    return'
    assert continuation_from_reply(prefix, reply) == ""


def test_continuation_and_trimming() -> None:
    prefix = "def f(xs):\n    ys = sorted(xs)\n    return y"
    reply = "```python\ndef f(xs):\n    ys = sorted(xs)\n    return ys[0]\n\nprint(f([2, 1]))\n```"
    assert trim_to_block(prefix, continuation_from_reply(prefix, reply)) == "s[0]"


@pytest.mark.slow
async def test_embedded_model_through_the_loop() -> None:
    """SmolLM2 (greedy) through the loop with the default analyzers: it writes the function
    (the prefill gets a body, not nothing), the best candidate is never worse than the first,
    and with no tests or examples to run the verdict never claims more than static checks."""
    prefix = ('import os\n\n\ndef list_python_files(folder: str) -> list[str]:\n'
              '    """Return the names of the .py files in folder."""\n    ')
    config = LoopConfig(max_iter=3, max_tokens=80, temperature=0.0, seed=0, max_retries=1,
                        factor_n=1)
    result = await FeedbackLoop(TransformersBackend(), config).run(AnalysisContext(prefix, ""))
    assert result.best is not None, result.log
    assert "os.listdir" in result.completion or "glob" in result.completion
    assert result.best.score >= result.nodes[0].score
    assert not result.verified
    assert result.verdict == "static checks only" or result.verdict.startswith("failed: ")


def test_prefilled_replies_continue_at_the_cursor() -> None:
    from collabcoder.server.loop.messages import (
        PromptParts,
        align_to_cursor,
        completion_from_reply,
        first_messages,
        prefilled_continuation,
    )

    prefix = "import os\n\n\ndef f(xs):\n    ys = sorted(xs)\n    "
    messages = first_messages(PromptParts(prefix, prefill=True))
    assert messages[-1]["role"] == "assistant"
    # the prefill stops one space short of the cursor (token healing) ...
    assert messages[-1]["content"] == "```python\ndef f(xs):\n    ys = sorted(xs)\n   "
    # the user message shows the code around the function, the prefill the function itself:
    # typing in it changes the prompt's end only (a KV cache keeps the rest)
    assert messages[1]["content"] == "```python\nimport os\n\n\n<CURSOR>\n```"
    typed = first_messages(PromptParts(prefix + "return ys", prefill=True))
    assert typed[:2] == messages[:2] and typed[2]["content"].endswith("    return ys")
    assert first_messages(PromptParts(prefix))[1]["content"].endswith("sorted(xs)\n    <CURSOR>\n```")
    # ... and the indentation the model writes on the cursor's line is the cursor's own
    assert completion_from_reply(prefix, " return ys[0]\n```", True) == "return ys[0]"
    assert prefilled_continuation("return ys[0]\n```\nThis returns...") == "return ys[0]"
    assert prefilled_continuation("```python\ndef f(xs): ...\n```") is None  # answered afresh
    assert align_to_cursor(prefix, "\n    return ys[0]") == "return ys[0]"
    # a new top-level function is not part of this one
    assert trim_to_block(prefix, align_to_cursor(prefix, "\ndef g():\n    pass")) == ""


async def test_loop_prefills_for_backends_that_continue(tiny_backend: TransformersBackend) -> None:
    config = LoopConfig(analyzers=FAST, max_iter=0, temperature=1.0, max_tokens=6, seed=4)
    result = await FeedbackLoop(tiny_backend, config).run(AnalysisContext(PREFIX, ""))
    assert result.best is not None
    # the node's conversation holds the prefill and the reply as one assistant message
    last = result.best.messages[-1]
    assert last["role"] == "assistant" and last["content"].startswith("```python\ndef add(")
