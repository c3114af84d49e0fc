"""Multi-turn tool-use episodes: the model writes code, calls the tool, reads its response and
tries again, up to the tool's `max_debug_attempts` executions, then gives a final answer.

An episode is kept as token ids: the prompt, then every later token with a mask bit, 1 for a
token the model sampled and 0 for the text the environment inserted (the template's end of turn,
the tool's response, the next generation prompt). The policy is scored on exactly these ids and
only mask-1 tokens carry loss, so a tool response never does.

The text between turns comes from `conversations.append_turn` (the same rendering the SFT
conversations use). A turn ends at the model's end-of-turn token or right after a
`</tool_call>` (a stop string); every call in a turn is answered, in order.

The final answer is `calls.final_answer` of the last turn. An episode that stops without one
(it ran out of turns or tokens while calling the tool) is judged on the code of its last
executed call, so a model that fixed its code but never restated it still gets correctness;
`EpisodeResult.answered` says which it was. The reward is `code_agentic_reward` of that program
judged on every test case, with `tool_calls` = debug attempts = the tool's executions.

Generation is written here, not taken from `rollout/generation.py`: that generator starts from a
text prompt through the chat template, while an episode continues from its own token ids and
stops on a tool call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from collabcoder.analyzers.protocol.rewards import (
    CodeAgenticBreakdown,
    CodeAgenticRewardWeights,
    code_agentic_reward,
)
from collabcoder.analyzers.sandbox import Sandbox
from collabcoder.analyzers.verdict import Outcome, Verdict
from collabcoder.training.agentic.calls import CALL_CLOSE, final_answer, parse_tool_calls
from collabcoder.training.agentic.conversations import append_turn, rollout_prompt
from collabcoder.training.agentic.tool import CodeExecutionTool, ToolConfig
from collabcoder.training.data.tasks import CodeAgenticTask
from collabcoder.training.rollout.generation import cut_at_eos


@dataclass(frozen=True)
class RolloutSettings:
    max_new_tokens: int = 512  # per assistant turn
    max_total_tokens: int = 4096  # prompt + everything after it
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0


@dataclass
class Episode:
    """One task, one attempt sequence. `ids`/`mask` are everything after the prompt."""

    task: CodeAgenticTask
    tool: CodeExecutionTool
    prompt_ids: list[int]
    text: str  # the rendered conversation so far (prompt included)
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)  # 1: sampled by the model
    turns: list[str] = field(default_factory=list)  # the model's text of each turn
    parsed_calls: int = 0  # <tool_call> blocks the model wrote
    valid_calls: int = 0  # of which the tool accepted (ran code or hit the attempt limit)
    last_code: str | None = None  # code of the last executed call
    done: bool = False
    truncated: bool = False  # stopped by a token limit


@dataclass(frozen=True)
class EpisodeResult:
    query_id: str
    prompt_ids: tuple[int, ...]
    ids: tuple[int, ...]
    mask: tuple[int, ...]
    turns: tuple[str, ...]
    program: str | None  # what was judged
    answered: bool  # the program is a final answer (False: the last executed call's code)
    verdict: Verdict | None
    reward: CodeAgenticBreakdown
    tool_calls: int  # executions
    invalid_calls: int
    parsed_calls: int
    valid_calls: int
    truncated: bool
    invalid_reasons: dict[str, int] = field(default_factory=dict)  # the tool's, by reason code

    @property
    def solved(self) -> bool:
        return self.verdict is not None and self.verdict.all_passed

    @property
    def attempts(self) -> int:
        """Programs tried: the executions, or 1 for an answer given without running code."""
        return max(1, self.tool_calls)


def _cut_turn(tokenizer: Any, ids: Sequence[int], eos_ids: Sequence[int]) -> tuple[list[int], bool]:
    """The turn's ids: up to the first EOS (True) or through the first `</tool_call>` (False)."""
    upto, finished = cut_at_eos(ids, eos_ids)
    text = tokenizer.decode(upto, skip_special_tokens=True)
    if CALL_CLOSE not in text:
        return list(upto), finished
    lo, hi = 1, len(upto)  # the fewest tokens whose text holds the closing tag
    while lo < hi:
        mid = (lo + hi) // 2
        if CALL_CLOSE in tokenizer.decode(upto[:mid], skip_special_tokens=True):
            hi = mid
        else:
            lo = mid + 1
    return list(upto[:lo]), False


@torch.no_grad()
def generate_turns(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[Sequence[int]],
    settings: RolloutSettings,
    eos_ids: Sequence[int],
) -> list[tuple[list[int], bool]]:
    """One turn for each context (left-padded batch): (ids, ended with EOS)."""
    width = max(len(c) for c in contexts)
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    input_ids = torch.tensor([[pad] * (width - len(c)) + list(c) for c in contexts], device=device)
    attention = torch.tensor(
        [[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=device
    )
    sampling: dict[str, Any] = (
        {"do_sample": False}
        if settings.temperature <= 0
        else {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p,
              "top_k": 0}
    )  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=list(eos_ids),
            pad_token_id=pad,
            stop_strings=[CALL_CLOSE],
            tokenizer=tokenizer,
            **sampling,
        )
    finally:
        model.train(was_training)
    return [_cut_turn(tokenizer, row, eos_ids) for row in out[:, width:].tolist()]


def start_episode(
    tokenizer: Any, task: CodeAgenticTask, tool_config: ToolConfig, sandbox: Sandbox | None
) -> Episode:
    text = rollout_prompt(tokenizer, task, tool_config)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return Episode(task, CodeExecutionTool(tool_config, task, sandbox), list(ids), text)


def _step(
    ep: Episode,
    turn_ids: list[int],
    ended: bool,
    tokenizer: Any,
    tool_config: ToolConfig,
    settings: RolloutSettings,
) -> None:
    """Add one model turn; answer its calls, or finish the episode."""
    turn_text = tokenizer.decode(turn_ids, skip_special_tokens=True)
    ep.ids += turn_ids
    ep.mask += [1] * len(turn_ids)
    ep.turns.append(turn_text)
    calls = parse_tool_calls(turn_text)
    total = len(ep.prompt_ids) + len(ep.ids)
    if not calls:
        ep.done = True
        ep.truncated = not ended
        return
    responses = []
    for call in calls:
        response = ep.tool.call_parsed(call)
        ep.parsed_calls += 1
        ep.valid_calls += int(response.valid)
        if response.verdict is not None and call.arguments is not None:
            ep.last_code = str(call.arguments.get("code"))
        responses.append(response.text)
    new_text = append_turn(tokenizer, tool_config, ep.text, turn_text, responses)
    glue = new_text[len(ep.text) + len(turn_text) :]
    if ended:  # the model wrote its end-of-turn token already
        eos_text = tokenizer.decode(turn_ids[-1:], skip_special_tokens=False)
        glue = glue.removeprefix(eos_text)
    glue_ids = tokenizer(glue, add_special_tokens=False)["input_ids"]
    ep.ids += glue_ids
    ep.mask += [0] * len(glue_ids)
    ep.text = new_text
    over = total + len(glue_ids) + 1 >= settings.max_total_tokens
    if over:
        ep.done = ep.truncated = True


def finish_episode(ep: Episode, weights: CodeAgenticRewardWeights) -> EpisodeResult:
    answer = final_answer(ep.turns[-1]) if ep.turns else None
    program = answer if answer is not None else ep.last_code
    verdict = ep.tool.run_all(program) if program is not None else None
    # Nothing to run: no test passed (an empty verdict scores correctness and cases 0).
    judged = verdict if verdict is not None else Verdict(Outcome.WRONG_ANSWER)
    reward = code_agentic_reward(judged, tool_calls=ep.tool.tool_calls, weights=weights)
    return EpisodeResult(
        ep.task.query_id,
        tuple(ep.prompt_ids),
        tuple(ep.ids),
        tuple(ep.mask),
        tuple(ep.turns),
        program,
        answer is not None,
        verdict,
        reward,
        ep.tool.tool_calls,
        ep.tool.invalid_calls,
        ep.parsed_calls,
        ep.valid_calls,
        ep.truncated,
        dict(ep.tool.invalid_reasons),
    )


def run_episodes(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[CodeAgenticTask],
    tool_config: ToolConfig,
    settings: RolloutSettings,
    eos_ids: Sequence[int],
    weights: CodeAgenticRewardWeights,
    *,
    sandbox: Sandbox | None = None,
    batch_size: int = 8,
) -> list[EpisodeResult]:
    """One episode per task (repeat a task for a group), in order. At most
    `max_debug_attempts + 1` model turns: every execution plus the final answer."""
    episodes = [start_episode(tokenizer, t, tool_config, sandbox) for t in tasks]
    max_turns = tool_config.config.max_debug_attempts + 1
    for _ in range(max_turns):
        live = [e for e in episodes if not e.done]
        if not live:
            break
        for start in range(0, len(live), batch_size):
            chunk = live[start : start + batch_size]
            room = min(settings.max_total_tokens - len(e.prompt_ids) - len(e.ids) for e in chunk)
            step = RolloutSettings(
                max_new_tokens=max(1, min(settings.max_new_tokens, room)),
                max_total_tokens=settings.max_total_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
            )
            turns = generate_turns(
                model, tokenizer, [e.prompt_ids + e.ids for e in chunk], step, eos_ids
            )
            for ep, (ids, ended) in zip(chunk, turns, strict=True):
                _step(ep, ids, ended, tokenizer, tool_config, settings)
    for ep in episodes:
        ep.done = True
    return [finish_episode(e, weights) for e in episodes]
