"""Team mode: the agents of an `agents.json` folder write the function at the cursor together.

What it does, and no more:

- Each agent is an in-process transformers model (`server/backends/lora.py`).
- Inside a function, at a line start of its body (block mode), the team writes the function
  with the training turn protocol (`analyzers.protocol.driver.run_turns`): the task is the
  file's imports and the function's code up to the cursor; the aux agent writes the helper
  `aux`, the main agent the function. With more than one turn, both agents get the next-turn
  prompts of the manifest's external mode on their previous code. There are no tests at
  inference, so the feedback reports definitions, syntax and aux usage only.
- The suggestion is what the main agent's function adds after the cursor. When it calls `aux`,
  the helper is inserted first, as a nested function at the cursor: an inline suggestion can
  only insert at the cursor, and a nested `def` before its first use behaves like the module-level
  helper the agents were trained with.
- Anywhere else (outside functions, mid-line) the main agent alone completes, like one model.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from collabcoder.analyzers.protocol.driver import Turn, run_turns
from collabcoder.analyzers.protocol.feedback import FeedbackOptions
from collabcoder.analyzers.protocol.program import (
    AUX_NAME,
    AUX_ROLE,
    MAIN_ROLE,
    FeedbackTask,
    extract_imports,
)
from collabcoder.server.agents.manifest import AgentsManifest, is_agents_folder
from collabcoder.server.backends.base import Backend, BackendError, CompletionRequest
from collabcoder.server.backends.lora import agent_backend, check_weights
from collabcoder.server.backends.transformers_backend import TransformersBackend
from collabcoder.server.loop.messages import continuation_from_reply, trim_to_block

_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
_CALLS_AUX = re.compile(rf"\b{AUX_NAME}\s*\(")


@dataclass(frozen=True)
class Enclosing:
    """The function the cursor is in: its name, where its `def` starts, its body indentation."""

    name: str
    def_offset: int  # index in the prefix of the `def` line's first character
    body_indent: str


def enclosing_function(prefix: str) -> Enclosing | None:
    """The innermost function whose body the cursor (at a blank line start) is in."""
    lines = prefix.split("\n")
    cursor = lines[-1]
    if cursor.strip():
        return None
    indent = len(cursor)
    offset = len(prefix) - len(cursor)
    for line in reversed(lines[:-1]):
        offset -= len(line) + 1
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        match = _DEF.match(line)
        if match and depth < indent:
            return Enclosing(match.group(2), offset, cursor)
        if depth == 0 and not match:
            return None  # back at module level: not inside a function
    return None


@dataclass(frozen=True)
class TeamTurn:
    turn: int
    aux_code: str
    main_code: str
    completion: str  # what the suggestion inserts at the cursor


TeamTurnCallback = Callable[[TeamTurn], Awaitable[None]]


def _indent(code: str, indent: str) -> str:
    return "\n".join(indent + line if line.strip() else "" for line in code.split("\n"))


def compose_at_cursor(prefix: str, where: Enclosing, aux_code: str, main_code: str) -> str:
    """The text inserted at the cursor: the nested helper (if main calls it), then what the main
    agent's function adds after the code already there."""
    body = ""
    if main_code.strip():
        body = trim_to_block(prefix, continuation_from_reply(prefix, main_code))
    if not (aux_code.strip() and _CALLS_AUX.search(main_code)):
        return body
    # The cursor already stands at the body's indentation: the first line goes in without it.
    helper = _indent(aux_code.strip("\n"), where.body_indent)[len(where.body_indent) :]
    if not body.strip():
        return helper
    return f"{helper}\n\n{where.body_indent}{body.lstrip()}"


class AgentTeam:
    """The agents of one manifest folder, loaded once."""

    def __init__(self, folder: str | Path, dtype: str = "bfloat16") -> None:
        self.folder = Path(folder)
        self.manifest = AgentsManifest.load(self.folder)
        self.backends: dict[str, TransformersBackend] = {
            entry.role: agent_backend(self.folder, entry, dtype) for entry in self.manifest.agents
        }
        # One loader at a time: transformers' lazy imports are not safe to race from threads.
        self._load_lock = threading.Lock()
        self.loaded = False

    @staticmethod
    def is_team(model: str) -> bool:
        return bool(model) and Path(model).expanduser().is_dir() and is_agents_folder(model)

    @property
    def main(self) -> Backend:
        return self.backends[MAIN_ROLE]

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(entry.role for entry in self.manifest.agents)

    def describe(self) -> str:
        kinds = ", ".join(f"{e.role}: {e.kind}" for e in self.manifest.agents)
        return f"{self.folder.name} ({len(self.backends)} agents: {kinds})"

    def load(self) -> None:
        """Load every agent's weights (blocking: call it in a thread)."""
        with self._load_lock:
            if not self.loaded:
                for role, backend in self.backends.items():
                    check_weights(Path(backend.model))
                    try:
                        backend.load()
                    except BackendError:
                        raise
                    except Exception as exc:  # a decoder's error names no file: name the agent
                        raise BackendError(
                            f"cannot load agent '{role}' from {backend.model}: {exc}"
                        ) from exc
                self.loaded = True

    def task_for(self, prefix: str, where: Enclosing) -> FeedbackTask:
        """The function so far, with the file's imports, as a turn-protocol task."""
        function = prefix[where.def_offset :].rstrip() + "\n"
        imports = extract_imports(prefix[: where.def_offset])
        prompt = f"{imports}\n\n\n{function}" if imports else function
        return FeedbackTask(prompt=prompt, entry_point=where.name)

    async def _ask(self, role: str, prompt: str, max_tokens: int) -> str:
        request = CompletionRequest(
            messages=({"role": "user", "content": prompt},),
            max_tokens=max_tokens,
            temperature=0.2,
            seed=0,
        )
        [candidate] = (await self.backends[role].complete(request))[:1]
        return candidate.text

    async def write_function(
        self,
        prefix: str,
        where: Enclosing,
        turns: int,
        max_tokens: int,
        on_turn: TeamTurnCallback | None = None,
    ) -> TeamTurn:
        """Run `turns` turns of the turn protocol; returns the last turn."""
        if not self.loaded:
            await asyncio.to_thread(self.load)
        protocol = self.manifest.turn_protocol
        mode = protocol.external_mode
        if mode == "expert_edits":  # no expert model at inference: the closest analysis mode
            mode = "level_feedback"
        options = FeedbackOptions(
            num_agents=2 if AUX_ROLE in self.backends else 1,
            original_prompt=protocol.original_prompt,
            previous_response=protocol.previous_response,
            sandbox_slice=protocol.sandbox_slice,
        )

        def at_cursor(turn: Turn) -> TeamTurn:
            completion = compose_at_cursor(prefix, where, turn.aux_code, turn.main_code)
            return TeamTurn(turn.turn, turn.aux_code, turn.main_code, completion)

        async def report(turn: Turn) -> None:
            if on_turn is not None:
                await on_turn(at_cursor(turn))

        async def ask(role: str, prompt: str) -> str:
            return await self._ask(role, prompt, max_tokens)

        task = self.task_for(prefix, where)
        return at_cursor(await run_turns(task, ask, turns, mode, options, report))

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()
