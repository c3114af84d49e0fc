"""Reference solutions from a teacher model for rows that carry none.

Any of our backends is a teacher (`server.backends.make_backend`: the embedded llama.cpp
default, an OpenAI-compatible endpoint, a transformers model, ...). A teacher's program is kept
only when it passes every one of the row's test cases in the sandbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from collabcoder.analyzers.protocol.replies import extract_code
from collabcoder.analyzers.sandbox import Sandbox, SandboxLimits
from collabcoder.server.backends.base import Backend, CompletionRequest
from collabcoder.training.agentic import prompts
from collabcoder.training.data.tasks import CodeAgenticTask


@dataclass(frozen=True)
class TeacherResult:
    solution: str | None  # None: no sample passed every case
    samples: int
    passed: int


def teacher_messages(task: CodeAgenticTask) -> tuple[dict[str, str], ...]:
    return (
        {"role": "system", "content": task.prompt},
        {"role": "user", "content": prompts.teacher_prompt(task.question)},
    )


async def teacher_solve(
    backend: Backend,
    task: CodeAgenticTask,
    sandbox: Sandbox,
    *,
    samples: int = 4,
    temperature: float = 0.7,
    max_tokens: int = 1024,
    seed: int | None = 0,
    limits: SandboxLimits | None = None,
) -> TeacherResult:
    """Sample `samples` programs; the first (in sample order) that passes every case wins."""
    request = CompletionRequest(
        messages=teacher_messages(task),
        n=samples,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
    )
    candidates = await backend.complete(request)
    programs = [extract_code(c.text) for c in candidates]
    limits = limits or SandboxLimits(timeout_s=10.0)
    verdicts = await asyncio.gather(*(sandbox.arun_io(p, task.io_suite, limits) for p in programs))
    passing = [p for p, v in zip(programs, verdicts, strict=True) if v.all_passed]
    return TeacherResult(passing[0] if passing else None, len(programs), len(passing))
