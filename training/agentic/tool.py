"""The code-execution tool of the code-agentic pipeline: its config and the tool itself.

One tool object serves one episode (one task): SFT conversations are built from its responses,
RL rollouts call it, and evaluation counts its calls, so a model meets the same responses
everywhere. Execution goes through our sandbox (one stdin/stdout run per case); the error
categories and suggestions are `analyzers.debug_hints`', the wording the language server's
feedback uses too.

A call never raises: a malformed call (bad JSON, an unknown or ill-typed argument, no code, an
index out of range, a wrong tool name) and a language other than Python get a response with
`valid=False` whose text says what is wrong, and they are counted in `invalid_calls` and, by
reason code (`ToolResponse.reason`, one of `INVALID_REASONS`), in `invalid_reasons`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from collabcoder.analyzers import debug_hints
from collabcoder.analyzers.sandbox import Sandbox, SandboxLimits, default_sandbox
from collabcoder.analyzers.testcases import IOCase, IOSuite
from collabcoder.analyzers.verdict import TestResult, Verdict
from collabcoder.training.agentic.calls import BAD_JSON, NOT_OBJECT, PARSE_REASONS, ParsedCall
from collabcoder.training.data.tasks import CodeAgenticTask

TOOL_NAME = "code_interpreter"
LANGUAGES = ("python", "python3", "py")  # accepted spellings of the one language that runs

# Categories a response can carry besides debug_hints' (NameError, SyntaxError, timeout, ...).
WRONG_OUTPUT = "wrong_output"  # debug_hints' "wrong_answer", named for stdin/stdout tests
MALFORMED_CALL = "malformed_call"
UNSUPPORTED_LANGUAGE = "unsupported_language"
UNKNOWN_TOOL = "unknown_tool"
ATTEMPT_LIMIT = "attempt_limit"
INVALID_CATEGORIES = (MALFORMED_CALL, UNSUPPORTED_LANGUAGE, UNKNOWN_TOOL)

# Why a call was refused (`ToolResponse.reason`): the parse-level codes of `calls.py`, then the
# tool's own checks, in the order it makes them.
NO_ARGUMENTS = "no_arguments"
UNKNOWN_ARGUMENT = "unknown_argument"
MISSING_CODE = "missing_code"
CODE_NOT_STRING = "code_not_string"
EMPTY_CODE = "empty_code"
LANGUAGE_NOT_STRING = "language_not_string"
INDEX_NOT_INTEGER = "index_not_integer"
INDEX_OUT_OF_RANGE = "index_out_of_range"
BAD_TIMEOUT = "bad_timeout"
INVALID_REASONS = (
    *PARSE_REASONS,
    UNKNOWN_TOOL,
    NO_ARGUMENTS,
    UNKNOWN_ARGUMENT,
    MISSING_CODE,
    CODE_NOT_STRING,
    EMPTY_CODE,
    LANGUAGE_NOT_STRING,
    UNSUPPORTED_LANGUAGE,
    INDEX_NOT_INTEGER,
    INDEX_OUT_OF_RANGE,
    BAD_TIMEOUT,
)

_TEXT_LIMIT = 1500  # characters of input/expected/actual/stderr shown in a response


def default_tool_schema(name: str = TOOL_NAME) -> dict[str, Any]:
    """The OpenAI function schema of the tool (what `tools=` in a chat template receives)."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": (
                "Execute Python code with input/output test case validation: the program reads "
                "the test case's input from stdin and its stdout is compared with the expected "
                "output. Without test_case_index every test case runs."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": "Python code to execute"},
                    "test_case_index": {
                        "type": "integer",
                        "description": "Index of test case to validate (0-based)",
                    },
                    "timeout": {"type": "number", "description": "Execution timeout in seconds"},
                    "language": {
                        "type": "string",
                        "description": "Programming language (only python runs)",
                        "default": "python",
                    },
                },
                "required": ["code"],
            },
        },
    }


class ToolSettings(BaseModel):
    """The tool's `config:` block (the seed's values are the defaults)."""

    model_config = ConfigDict(extra="forbid")

    default_timeout: float = Field(
        default=30.0, gt=0
    )  # seconds per case; also the most a call may ask
    max_debug_attempts: int = Field(default=5, ge=1)  # executions per episode
    enable_debug_prints: bool = True  # show the program's stderr and printed output on failure


class ToolConfig(BaseModel):
    """One tool entry of the tool config YAML: `name`, `tool_schema`, `config`."""

    model_config = ConfigDict(extra="forbid")

    name: str = TOOL_NAME
    tool_schema: dict[str, Any] = Field(default_factory=default_tool_schema)
    config: ToolSettings = Field(default_factory=ToolSettings)

    @field_validator("tool_schema")
    @classmethod
    def _check_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        function = schema.get("function")
        if schema.get("type") != "function" or not isinstance(function, dict):
            raise ValueError("must be an OpenAI function schema: {type: function, function: {...}}")
        params = function.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        if not isinstance(props, dict):
            raise ValueError("function.parameters.properties is missing")
        missing = [k for k in ("code", "test_case_index", "timeout", "language") if k not in props]
        if missing:
            raise ValueError(f"function.parameters.properties lacks {', '.join(missing)}")
        return schema

    def model_post_init(self, __context: Any) -> None:
        fname = self.tool_schema["function"].get("name")
        if fname != self.name:
            raise ValueError(f"tool_schema.function.name is {fname!r} but name is {self.name!r}")

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.tool_schema["function"]["parameters"]["properties"])


class ToolConfigError(ValueError):
    """A tool config file that cannot be used; the message names the file and the key."""


def load_tool_config(path: str | Path) -> ToolConfig:
    """Read a tool config YAML: `{tools: [{name, tool_schema, config}]}` (the seed's shape, the
    first entry is used) or one such entry at the top level."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolConfigError(f"tool config {path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ToolConfigError(f"tool config {path}: invalid YAML ({exc})") from exc
    prefix = ""
    if isinstance(data, dict) and "tools" in data:
        tools = data["tools"]
        if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
            raise ToolConfigError(f"tool config {path}: key 'tools' must be a non-empty list")
        data, prefix = tools[0], "tools[0]."
    if not isinstance(data, dict):
        raise ToolConfigError(f"tool config {path}: expected a mapping, got {type(data).__name__}")
    try:
        return ToolConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = prefix + ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            # The one check without a field of its own is the name/schema match: name it.
            problems.append(f"key '{key.rstrip('.') or prefix + 'name'}': {msg}")
        raise ToolConfigError(f"tool config {path}: " + "; ".join(problems)) from exc
    except ValueError as exc:  # model_post_init's name check
        raise ToolConfigError(f"tool config {path}: key '{prefix}name': {exc}") from exc


@dataclass(frozen=True)
class ToolResponse:
    """What one tool call produced. `text` is exactly what the model reads."""

    text: str
    valid: bool  # the call was well-formed (and asked for Python)
    passed: bool | None  # None when nothing ran
    error_category: str | None  # None when passed or nothing to report
    case_index: int | None  # None: a bad call, or every case ran
    duration_s: float
    verdict: Verdict | None = None  # the sandbox's, when code ran
    reason: str | None = None  # why an invalid call was refused (INVALID_REASONS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "valid": self.valid,
            "passed": self.passed,
            "error_category": self.error_category,
            "reason": self.reason,
            "case_index": self.case_index,
            "duration_s": self.duration_s,
        }


def _cut(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def category_of(result: TestResult | Verdict) -> str:
    """debug_hints' category, with wrong answers named `wrong_output`."""
    category = debug_hints.categorize(result)
    return WRONG_OUTPUT if category == debug_hints.WRONG_ANSWER else category


def suggestion_for(category: str) -> str:
    return debug_hints.suggestion(
        debug_hints.WRONG_ANSWER if category == WRONG_OUTPUT else category
    )


class CodeExecutionTool:
    """Runs model-written code against one task's stdin/stdout cases.

    Counters: `tool_calls` = well-formed calls that ran code (what `code_agentic_reward` counts
    as tool use and attempts), `invalid_calls` = malformed or unsupported calls (and
    `invalid_reasons`, the same by reason code), `total_calls` = every call. After `max_debug_attempts` executions a further call runs
    nothing and answers with category `attempt_limit`.
    """

    def __init__(
        self, config: ToolConfig, task: CodeAgenticTask, sandbox: Sandbox | None = None
    ) -> None:
        self.config = config
        self.task = task
        self._sandbox = sandbox
        self.tool_calls = 0
        self.invalid_calls = 0
        self.invalid_reasons: Counter[str] = Counter()
        self.limit_calls = 0

    @property
    def total_calls(self) -> int:
        return self.tool_calls + self.invalid_calls + self.limit_calls

    @property
    def attempts_left(self) -> int:
        return max(0, self.config.config.max_debug_attempts - self.tool_calls)

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = default_sandbox()
        return self._sandbox

    @property
    def num_cases(self) -> int:
        return len(self.task.io_suite.cases)

    # --- calls ---------------------------------------------------------------------------------

    def call_parsed(self, parsed: ParsedCall) -> ToolResponse:
        """A call parsed from model output (`calls.parse_tool_calls`), malformed ones included."""
        if parsed.name is not None and parsed.name != self.config.name:
            return self.call_named(parsed.name, None)
        if parsed.error is not None:
            return self._invalid(
                MALFORMED_CALL,
                parsed.reason or BAD_JSON,
                f"Malformed call: {parsed.error}.",
                time.perf_counter(),
            )
        return self.call(parsed.arguments or {})

    def call_named(self, name: str, arguments: str | Mapping[str, object] | None) -> ToolResponse:
        """A call as parsed from model output: checks the tool name first."""
        if name != self.config.name:
            return self._invalid(
                UNKNOWN_TOOL,
                UNKNOWN_TOOL,
                f"Unknown tool {name!r}. The only tool is {self.config.name!r}.",
                time.perf_counter(),
            )
        return self.call(arguments if arguments is not None else "")

    def call(self, arguments: str | Mapping[str, object]) -> ToolResponse:
        """Run one call; `arguments` is the JSON text or the decoded object. Never raises."""
        start = time.perf_counter()
        args, problem = self._check_arguments(arguments)
        if problem is not None:
            category, reason, message = problem
            return self._invalid(category, reason, message, start)
        assert args is not None
        if self.attempts_left == 0:
            self.limit_calls += 1
            text = (
                f"Attempt limit reached: {self.config.config.max_debug_attempts} executions were "
                "used. No code was run. Give your final answer now."
            )
            return ToolResponse(text, True, None, ATTEMPT_LIMIT, None, _since(start))
        self.tool_calls += 1
        code: str = args["code"]
        timeout: float = args["timeout"]
        index: int | None = args["test_case_index"]
        limits = SandboxLimits(timeout_s=timeout, cpu_time_s=max(1, int(timeout) + 1))
        cases = self.task.io_suite.cases if index is None else (self.task.io_suite.cases[index],)
        verdict = self.sandbox.run_io(code, IOSuite(tuple(cases)), limits)
        return self._respond(verdict, index, cases, start)

    def run_all(self, code: str, timeout: float | None = None) -> Verdict:
        """Judge `code` on every case (the final answer's reward); not counted as a call."""
        t = timeout or self.config.config.default_timeout
        limits = SandboxLimits(timeout_s=t, cpu_time_s=max(1, int(t) + 1))
        return self.sandbox.run_io(code, self.task.io_suite, limits)

    # --- checking a call -----------------------------------------------------------------------

    def _check_arguments(
        self, arguments: str | Mapping[str, object]
    ) -> tuple[dict[str, Any] | None, tuple[str, str, str] | None]:
        """(arguments, None), or (None, (category, reason, message)) for a refused call."""

        def bad(
            reason: str, message: str, category: str = MALFORMED_CALL
        ) -> tuple[None, tuple[str, str, str]]:
            return None, (category, reason, message)

        if isinstance(arguments, str):
            if not arguments.strip():
                return bad(
                    NO_ARGUMENTS, "Malformed call: no arguments; pass a JSON object with `code`."
                )
            try:
                decoded = json.loads(arguments)
            except json.JSONDecodeError as exc:
                return bad(BAD_JSON, f"Malformed call: the arguments are not valid JSON ({exc}).")
        else:
            decoded = arguments
        if not isinstance(decoded, Mapping):
            return bad(
                NOT_OBJECT,
                f"Malformed call: the arguments must be a JSON object, got {type(decoded).__name__}.",
            )
        known = set(self.config.properties)
        unknown = sorted(str(k) for k in decoded if k not in known)
        if unknown:
            return bad(
                UNKNOWN_ARGUMENT,
                f"Malformed call: unknown argument(s) {', '.join(map(repr, unknown))}; "
                f"the arguments are {', '.join(sorted(known))}.",
            )
        code = decoded.get("code")
        if code is None:
            return bad(MISSING_CODE, "Malformed call: the required argument `code` is missing.")
        if not isinstance(code, str):
            return bad(
                CODE_NOT_STRING,
                f"Malformed call: `code` must be a string, got {type(code).__name__}.",
            )
        if not code.strip():
            return bad(EMPTY_CODE, "Malformed call: `code` is empty.")
        language = decoded.get("language", "python")
        if not isinstance(language, str):
            return bad(
                LANGUAGE_NOT_STRING,
                f"Malformed call: `language` must be a string, got {type(language).__name__}.",
            )
        if language.strip().lower() not in LANGUAGES:
            return bad(
                UNSUPPORTED_LANGUAGE,
                f"Unsupported language {language!r}: only Python code can be executed.",
                UNSUPPORTED_LANGUAGE,
            )
        index = decoded.get("test_case_index")
        n = self.num_cases
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int):
                if isinstance(index, float) and index.is_integer():
                    index = int(index)
                else:
                    return bad(
                        INDEX_NOT_INTEGER,
                        "Malformed call: `test_case_index` must be an integer, got "
                        f"{json.dumps(index) if _jsonable(index) else type(index).__name__}.",
                    )
            if not 0 <= index < n:
                return bad(
                    INDEX_OUT_OF_RANGE,
                    f"Malformed call: test_case_index {index} is out of range; this problem has "
                    f"{n} test case(s), indexes 0 to {n - 1}.",
                )
        default = self.config.config.default_timeout
        timeout = decoded.get("timeout", default)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            return bad(
                BAD_TIMEOUT,
                f"Malformed call: `timeout` must be a positive number, got {timeout!r}.",
            )
        # A call may shorten the limit, never raise it past the configured one.
        args = {"code": code, "test_case_index": index, "timeout": min(float(timeout), default)}
        return args, None

    def _invalid(self, category: str, reason: str, message: str, start: float) -> ToolResponse:
        self.invalid_calls += 1
        self.invalid_reasons[reason] += 1
        return ToolResponse(message, False, None, category, None, _since(start), reason=reason)

    # --- the response --------------------------------------------------------------------------

    def _respond(
        self,
        verdict: Verdict,
        index: int | None,
        cases: tuple[IOCase, ...] | list[IOCase],
        start: float,
    ) -> ToolResponse:
        n = self.num_cases
        left = self.attempts_left
        tail = f"Attempts left: {left}."
        if verdict.is_infra_error:
            text = (
                "Sandbox failure: the code could not be run because of a problem in the "
                f"sandbox, not in the code ({verdict.infra_error}). Try again.\n{tail}"
            )
            return ToolResponse(
                text, True, None, debug_hints.INFRA_ERROR, index, _since(start), verdict
            )
        what = f"Test case {index} of {n}" if index is not None else f"All {n} test case(s)"
        if verdict.all_passed:
            text = f"{what}: PASSED"
            if index is None:
                text += f" ({verdict.passed_count}/{n})"
            else:
                text += f"\nOutput:\n{_cut(verdict.tests[0].actual or '')}"
            return ToolResponse(f"{text}\n{tail}", True, True, None, index, _since(start), verdict)

        failing = verdict.failures()
        first = failing[0] if failing else None
        category = category_of(first if first is not None else verdict)
        pos = first.index if first is not None else 0
        case_no = index if index is not None else pos
        lines = [f"{what}: FAILED ({category})"]
        if index is None and verdict.tests:
            lines[0] += f", {verdict.passed_count}/{n} passed; first failure: test case {case_no}"
        case = cases[pos] if pos < len(cases) else cases[0]
        lines += ["Input:", _cut(case.stdin.rstrip("\n")) or "(empty)"]
        lines += self._detail(verdict, first, category, case)
        lines.append(f"Suggestion: {suggestion_for(category)}")
        lines.append(tail)
        return ToolResponse("\n".join(lines), True, False, category, index, _since(start), verdict)

    def _detail(
        self, verdict: Verdict, test: TestResult | None, category: str, case: IOCase
    ) -> list[str]:
        out: list[str] = []
        if category == WRONG_OUTPUT and test is not None:
            out += ["Expected output:", _cut(case.expected_stdout.rstrip("\n")) or "(empty)"]
            out += ["Actual output:", _cut((test.actual or "").rstrip("\n")) or "(empty)"]
            return out
        if verdict.syntax_error is not None:
            info = verdict.syntax_error
            where = f" at line {info.line}" if info.line else ""
            out.append(f"Error: SyntaxError{where}: {info.message}")
            if info.text:
                out.append(f"    {info.text.strip()}")
        elif category == debug_hints.TIMEOUT:
            limit = test.message if test is not None and test.message else "timed out"
            out.append(f"Error: the run exceeded the time limit ({limit}).")
        elif category == debug_hints.MEMORY:
            out.append("Error: the run exceeded the memory limit.")
        else:
            etype = test.error_type if test is not None else None
            message = test.message if test is not None else None
            line = test.line if test is not None else None
            if etype is None:
                etype, message, line = debug_hints.load_error(verdict)
            where = f" (line {line})" if line else ""
            out.append(f"Error: {etype or 'runtime error'}{where}: {message or ''}".rstrip(": "))
        if self.config.config.enable_debug_prints:
            if test is not None and test.actual:
                out += ["Printed output:", _cut(test.actual.rstrip("\n"))]
            stderr = clean_traceback(verdict.stderr).strip()
            if stderr:
                out += ["Stderr:", _cut(stderr[-_TEXT_LIMIT:])]
        return out


def clean_traceback(stderr: str) -> str:
    """Drop the sandbox's own frames from a traceback, keeping the program's (`<program>`)."""
    out: list[str] = []
    skipping = False
    for line in stderr.splitlines():
        if line.startswith("  File "):
            skipping = not line.startswith('  File "<program>"')
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


def _since(start: float) -> float:
    return time.perf_counter() - start


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
