"""Reference solutions from a teacher model for rows that carry none.

Any of our backends is a teacher (`server.backends.make_backend`: the embedded llama.cpp
default, an OpenAI-compatible endpoint, a transformers model, ...). A teacher's program is kept
only when it passes every one of the row's test cases in the sandbox; for a row where no sample
does, each sample's reason is kept so that the skip says why (no code, a syntax error, which
case failed).

All rows are asked in one event loop (`teacher_solutions`): an async client such as the
`openai` backend's binds its connections to the loop it first ran in, so one `asyncio.run` per
row breaks from the second row on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from collabcoder.analyzers.protocol.replies import code_blocks, extract_code
from collabcoder.analyzers.sandbox import Sandbox, SandboxLimits
from collabcoder.analyzers.verdict import Verdict
from collabcoder.server.backends.base import Backend, BackendError, CompletionRequest
from collabcoder.training.agentic import prompts
from collabcoder.training.agentic.tool import category_of
from collabcoder.training.data.tasks import CodeAgenticTask


class TeacherError(RuntimeError):
    """The teacher could not answer at all (endpoint down, unknown model, ...): the message
    names the row and the teacher. Not a failed sample: those skip their row."""


@dataclass(frozen=True)
class TeacherResult:
    solution: str | None  # None: no sample passed every case
    samples: int
    passed: int
    failures: tuple[str, ...] = ()  # why each failing sample failed, "sample i: ..."

    def skip_reason(self) -> str:
        detail = "; ".join(self.failures)
        return f"no teacher solution passed its tests ({self.samples} sampled: {detail})"


def teacher_messages(task: CodeAgenticTask) -> tuple[dict[str, str], ...]:
    return (
        {"role": "system", "content": task.prompt},
        {"role": "user", "content": prompts.teacher_prompt(task.question)},
    )


def sample_failure(reply: str, verdict: Verdict) -> str:
    """Why one sample's program is not a solution, in a few words."""
    if not reply.strip():
        return "empty reply"
    if verdict.is_infra_error:
        return f"sandbox error ({verdict.infra_error})"
    if verdict.syntax_error is not None:
        if not code_blocks(reply):  # prose run as a program: there was no code to run
            return "no code in the reply"
        line = f" at line {verdict.syntax_error.line}" if verdict.syntax_error.line else ""
        return f"SyntaxError{line}"
    failing = verdict.failures()
    if not failing:
        return f"did not run its tests ({category_of(verdict)})"
    first = failing[0]
    return (
        f"{verdict.passed_count}/{verdict.total} cases passed, first failure case {first.index} "
        f"({category_of(first)})"
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
    replies = [c.text for c in candidates]
    programs = [extract_code(text) for text in replies]
    limits = limits or SandboxLimits(timeout_s=10.0)
    verdicts = await asyncio.gather(*(sandbox.arun_io(p, task.io_suite, limits) for p in programs))
    passing = [p for p, v in zip(programs, verdicts, strict=True) if v.all_passed]
    failures = tuple(
        f"sample {i}: {sample_failure(text, v)}"
        for i, (text, v) in enumerate(zip(replies, verdicts, strict=True))
        if not v.all_passed
    )
    return TeacherResult(passing[0] if passing else None, len(programs), len(passing), failures)


def teacher_solutions(
    backend: Backend,
    tasks: Sequence[tuple[str, CodeAgenticTask]],
    sandbox: Sandbox,
    *,
    samples: int = 4,
    max_tokens: int = 1024,
    seed: int | None = 0,
    concurrency: int = 4,
) -> list[TeacherResult]:
    """`teacher_solve` for each (where, task), in order, in one event loop, at most
    `concurrency` requests at a time. The backend is closed at the end (its connections belong
    to this loop; a later use opens new ones). A backend error is a TeacherError naming `where`.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(where: str, task: CodeAgenticTask) -> TeacherResult:
        async with gate:
            try:
                return await teacher_solve(
                    backend, task, sandbox, samples=samples, max_tokens=max_tokens, seed=seed
                )
            except BackendError as exc:
                raise TeacherError(
                    f"{where}: the teacher ({backend.name}, model {backend.model!r}) failed: {exc}"
                ) from exc

    async def run() -> list[TeacherResult]:
        try:
            return list(await asyncio.gather(*(one(where, task) for where, task in tasks)))
        finally:
            await backend.aclose()

    return asyncio.run(run()) if tasks else []
