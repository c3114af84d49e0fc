"""Multi-agent mode: the agents of an `agents.json` folder, composed like in training.

What it does, and no more:

- Each agent is an in-process transformers model: `full` agents are `from_pretrained` folders,
  `lora` agents are peft adapters merged once into a private copy of their base model.
- Inside a function, at a line start of its body (block mode), the team writes the function:
  both agents get the training prompts (`initial_prompts`) for a task made of the file's imports
  and the function's code up to the cursor; the aux agent writes the helper `aux`, the main agent
  the function; replies are cleaned with `clean_completion`. With more than one turn, both agents
  get the next-turn prompts (`render_next_prompts`, the manifest's external mode) on their
  previous code. There are no tests at inference, so the feedback reports definitions, syntax
  and aux usage only.
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

from collabcoder.analyzers.feedback import (
    FeedbackOptions,
    FeedbackTask,
    initial_prompts,
    render_next_prompts,
)
from collabcoder.analyzers.program import (
    AUX_NAME,
    AUX_ROLE,
    MAIN_ROLE,
    clean_completion,
    extract_imports,
)
from collabcoder.server.agents.manifest import AgentEntry, AgentsManifest, is_agents_folder
from collabcoder.server.backends.base import Backend, BackendError, CompletionRequest
from collabcoder.server.backends.transformers_backend import LoadedModel, TransformersBackend
from collabcoder.server.loop.prompts import continuation_from_reply, trim_to_block

_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
_CALLS_AUX = re.compile(rf"\b{AUX_NAME}\s*\(")


class LoraBackend(TransformersBackend):
    """A peft adapter merged into its own copy of the base model (the shared cache of
    `load_model` must not see merged weights)."""

    def __init__(self, adapter: str, base_model: str, dtype: str = "bfloat16") -> None:
        super().__init__(adapter, dtype=dtype, fim_template="none")
        self.base_model = base_model
        self._lm: LoadedModel | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> LoadedModel:
        with self._lock:
            if self._lm is None:
                self._lm = self._merge()
            return self._lm

    def _merge(self) -> LoadedModel:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from collabcoder.server.backends.embedded_model import resolve_model

        base_source = resolve_model(self.base_model).source
        try:
            base = AutoModelForCausalLM.from_pretrained(
                base_source, dtype=getattr(torch, self.dtype)
            )
            model = PeftModel.from_pretrained(base, self.model).merge_and_unload()
            has_tokenizer = (Path(self.model) / "tokenizer_config.json").is_file()
            tokenizer = AutoTokenizer.from_pretrained(self.model if has_tokenizer else base_source)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"cannot load LoRA agent {self.model} on {self.base_model}: {exc}"
            ) from exc
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return LoadedModel(model, tokenizer, self.model, threading.Lock())


def agent_backend(folder: Path, entry: AgentEntry, dtype: str = "bfloat16") -> TransformersBackend:
    path = str(folder / entry.path)
    if entry.kind == "lora":
        return LoraBackend(path, entry.base_model or "", dtype)
    return TransformersBackend(path, dtype=dtype, fim_template="none")


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


TurnCallback = Callable[[TeamTurn], Awaitable[None]]


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
                for backend in self.backends.values():
                    backend.load()
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
        on_turn: TurnCallback | None = None,
    ) -> TeamTurn:
        """Run `turns` turns of the turn protocol; returns the last turn."""
        if not self.loaded:
            await asyncio.to_thread(self.load)
        task = self.task_for(prefix, where)
        protocol = self.manifest.turn_protocol
        num_agents = 2 if AUX_ROLE in self.backends else 1
        mode = protocol.external_mode
        if mode == "expert_edits":  # no expert model at inference: the closest analysis mode
            mode = "level_feedback"
        options = FeedbackOptions(
            num_agents=num_agents,
            original_prompt=protocol.original_prompt,
            previous_response=protocol.previous_response,
            sandbox_slice=protocol.sandbox_slice,
        )
        prompts = initial_prompts(task, num_agents)
        last: TeamTurn | None = None
        for turn in range(1, max(1, turns) + 1):
            roles = list(prompts)
            replies = await asyncio.gather(
                *(self._ask(role, prompts[role], max_tokens) for role in roles)
            )
            by_role = dict(zip(roles, replies, strict=True))
            aux_code = (
                clean_completion(by_role[AUX_ROLE], AUX_NAME) if AUX_ROLE in by_role else ""
            )
            main_code = clean_completion(
                by_role[MAIN_ROLE], where.name, exclude=(AUX_NAME,), prompt=task.prompt
            )
            last = TeamTurn(turn, aux_code, main_code,
                            compose_at_cursor(prefix, where, aux_code, main_code))
            if on_turn is not None:
                await on_turn(last)
            if turn < turns:
                prompts = render_next_prompts(mode, task, aux_code, main_code, options=options)
        assert last is not None
        return last

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()
