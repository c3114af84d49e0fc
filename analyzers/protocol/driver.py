"""The turn driver: initial prompts -> each agent's reply -> its function -> next-turn prompts.

Training and the server's team of agents play the same turns. Training samples a group of
replies per agent, judges many joint actions in one sandbox batch and hands one of them on, so it
calls the steps one by one (`first_prompts`, `agent_codes`, `next_prompts`); the server asks
each agent for one reply per turn and has no tests, so `run_turns` strings the same steps
together for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from collabcoder.analyzers.protocol.feedback import (
    FeedbackMode,
    FeedbackOptions,
    render_next_prompts,
)
from collabcoder.analyzers.protocol.program import (
    AUX_NAME,
    FeedbackTask,
    ProgramFacts,
    roles,
)
from collabcoder.analyzers.protocol.prompts import initial_prompts
from collabcoder.analyzers.protocol.replies import ExpertEdits, extract_function
from collabcoder.analyzers.verdict import Verdict

# (role, prompt) -> the agent's reply
AskAgent = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class Turn:
    turn: int  # 1-based
    aux_code: str  # "" for one agent
    main_code: str


TurnCallback = Callable[[Turn], Awaitable[None]]


def first_prompts(task: FeedbackTask, num_agents: int) -> list[str]:
    """The first-turn prompt of each agent, in role order."""
    prompts = initial_prompts(task, num_agents)
    return [prompts[role] for role in roles(num_agents)]


def agent_codes(task: FeedbackTask, replies: Sequence[str], num_agents: int) -> tuple[str, str]:
    """(aux code, main code) pulled out of one reply per agent, in role order."""
    entry = task.entry_point
    if num_agents == 1:
        return "", extract_function(replies[0], entry, prompt=task.prompt)
    aux = extract_function(replies[0], AUX_NAME)
    # The main agent's own `aux` must not replace the helper agent's.
    main = extract_function(replies[1], entry, exclude=(AUX_NAME,), prompt=task.prompt)
    return aux, main


def next_prompts(
    mode: str | FeedbackMode,
    task: FeedbackTask,
    aux_code: str,
    main_code: str,
    options: FeedbackOptions,
    verdict: Verdict | None = None,
    facts: ProgramFacts | None = None,
    *,
    expert: ExpertEdits | None = None,
) -> list[str]:
    """The next-turn prompt of each agent, in role order (see `render_next_prompts`)."""
    prompts = render_next_prompts(
        mode, task, aux_code, main_code, verdict, facts, options, expert=expert
    )
    return [prompts[role] for role in roles(options.num_agents)]


async def run_turns(
    task: FeedbackTask,
    ask: AskAgent,
    turns: int,
    mode: str | FeedbackMode,
    options: FeedbackOptions,
    on_turn: TurnCallback | None = None,
) -> Turn:
    """Play `turns` turns (at least one), asking every agent at once in each; the last turn.

    Without tests, the feedback between turns reports definitions, syntax and aux usage only.
    """
    agents = roles(options.num_agents)
    prompts = first_prompts(task, options.num_agents)
    turn = 1
    while True:
        replies = await asyncio.gather(*(ask(r, p) for r, p in zip(agents, prompts, strict=True)))
        aux, main = agent_codes(task, replies, options.num_agents)
        last = Turn(turn, aux, main)
        if on_turn is not None:
            await on_turn(last)
        if turn >= turns:
            return last
        prompts = next_prompts(mode, task, aux, main, options)
        turn += 1
