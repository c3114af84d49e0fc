"""What callers submit (`AssertJob`, `IOJob`) and how the client writes it for the zygote.

One request per line, plain JSON (the zygote is stdlib-only and never unpickles); see zygote.py
for the protocol. Suites and limits are encoded once each (cached): the zygote caches compiled
suites by key, so after the first request a suite travels as its key only.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from collabcoder.analyzers.sandbox.limits import SandboxLimits
from collabcoder.analyzers.testcases import AssertSuite, IOCase, IOSuite


@dataclass(frozen=True)
class AssertJob:
    program: str
    suite: AssertSuite
    limits: SandboxLimits | None = None


@dataclass(frozen=True)
class IOJob:
    program: str
    suite: IOSuite
    limits: SandboxLimits | None = None


def encode_job(
    jid: int, job: AssertJob | IOJob, limits: SandboxLimits
) -> tuple[bytes, bytes | None, str | None]:
    """(request, the request with its suite by key only, suite key); the last two for assert
    jobs only. Raises TypeError or ValueError for a job JSON cannot encode."""
    head = f'{{"id":{jid},"limits":{_limits_json(limits)},"program":{json.dumps(job.program)},'
    key: str | None = None
    short: bytes | None = None
    if isinstance(job, AssertJob):
        key, suite = suite_json(job.suite)
        body = f'"kind":"asserts","suite_key":"{key}","suite":{suite}}}\n'
        short = (head + f'"kind":"asserts","suite_key":"{key}"}}\n').encode()
    else:
        cases = json.dumps([_wire_case(c) for c in job.suite.cases])
        body = f'"kind":"io","cases":{cases}}}\n'
    return (head + body).encode(), short, key  # json.dumps output is ASCII


@functools.lru_cache(maxsize=64)
def _limits_json(limits: SandboxLimits) -> str:
    return json.dumps(limits.to_wire())


@functools.lru_cache(maxsize=4096)
def suite_json(suite: AssertSuite) -> tuple[str, str]:
    """(key, JSON) of a suite, once per suite: the zygote caches compiled suites by key."""
    wire = [suite.entry_point, suite.preamble, [[s.source, s.is_test, s.line] for s in suite.steps]]
    text = json.dumps(wire)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest(), text


def _wire_case(case: IOCase) -> dict[str, Any]:
    # Room for the whole expected output (and then some) even above max_output_bytes.
    return {"stdin": case.stdin, "cap": 2 * len(case.expected_stdout.encode()) + 4096}
