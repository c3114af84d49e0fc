"""The code-agentic tool and reward as verl plugs them in (for `agentic export --format verl`).

verl is not a dependency and does not run on CPU, so nothing here imports it at module level:
`CodeAgenticVerlTool` subclasses verl's `BaseTool` when verl is installed and has its methods
(`create`, `execute`, `calc_reward`, `release`) either way; `compute_score` has the signature of
verl's `custom_reward_function`. Both run our sandbox, our tool responses and
`code_agentic_reward`, so a verl run meets the same tool and reward as `collab-train agentic`.
Tested here by calling these methods directly; not run under verl in this repository.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

from collabcoder.analyzers.protocol.rewards import CodeAgenticRewardWeights, code_agentic_reward
from collabcoder.analyzers.testcases import IOCase, IOSuite
from collabcoder.training.agentic.calls import final_answer, parse_tool_calls
from collabcoder.training.agentic.tool import CodeExecutionTool, ToolConfig, ToolSettings
from collabcoder.training.data.tasks import CodeAgenticTask

try:  # pragma: no cover - verl is absent here
    from verl.tools.base_tool import BaseTool as _Base
except ImportError:
    _Base = object


def task_from_kwargs(kwargs: dict[str, Any]) -> CodeAgenticTask:
    """The task of a verl `create_kwargs` / `ground_truth` payload: {inputs, outputs, ...}."""
    cases = tuple(IOCase(i, o) for i, o in zip(kwargs["inputs"], kwargs["outputs"], strict=True))
    return CodeAgenticTask(
        prompt=str(kwargs.get("prompt", "")),
        question=str(kwargs.get("question", "")),
        query_id=str(kwargs.get("query_id", "")),
        io_suite=IOSuite(cases),
    )


def _schema_dict(tool_schema: Any) -> dict[str, Any]:
    if hasattr(tool_schema, "model_dump"):  # verl's OpenAIFunctionToolSchema
        return dict(tool_schema.model_dump(exclude_unset=True, exclude_none=True))
    return dict(tool_schema)


class CodeAgenticVerlTool(_Base):
    """verl tool: one `CodeExecutionTool` per trajectory (instance)."""

    def __init__(self, config: dict[str, Any], tool_schema: Any) -> None:
        if _Base is not object:  # pragma: no cover
            super().__init__(config, tool_schema)
        settings = {k: v for k, v in (config or {}).items() if k in ToolSettings.model_fields}
        schema = _schema_dict(tool_schema)
        self.tool_config = ToolConfig(
            name=schema["function"]["name"], tool_schema=schema, config=ToolSettings(**settings)
        )
        self.name = self.tool_config.name
        self._instances: dict[str, CodeExecutionTool] = {}

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> str:
        instance_id = instance_id or str(uuid4())
        create_kwargs = kwargs.get("create_kwargs", kwargs)
        self._instances[instance_id] = CodeExecutionTool(
            self.tool_config, task_from_kwargs(create_kwargs)
        )
        return instance_id

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[Any, float, dict[str, Any]]:
        tool = self._instances[instance_id]
        response = tool.call(parameters)
        metrics = {k: v for k, v in response.to_dict().items() if k != "text"}
        return _wrap(response.text), 0.0, metrics

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        return 0.0  # the episode's reward is compute_score's, on the final answer

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._instances.pop(instance_id, None)


def _wrap(text: str) -> Any:
    try:  # pragma: no cover - newer verl wants its ToolResponse; older ones a dict/str
        from verl.tools.schemas import ToolResponse
    except ImportError:
        return {"text": text}
    return ToolResponse(text=text)  # pragma: no cover


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str | dict[str, Any],
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """verl custom reward: `code_agentic_reward` of the final answer in `solution_str`.

    Tool calls are counted from the trajectory's `<tool_call>` blocks (well-formed ones);
    weights may come in `extra_info["reward_weights"]`.
    """
    truth = json.loads(ground_truth) if isinstance(ground_truth, str) else dict(ground_truth)
    task = task_from_kwargs(truth)
    calls = [c for c in parse_tool_calls(solution_str) if c.ok]
    weights = CodeAgenticRewardWeights(**((extra_info or {}).get("reward_weights") or {}))
    code = final_answer(solution_str)
    tool = CodeExecutionTool(ToolConfig(), task)
    if code is None:
        from collabcoder.analyzers.verdict import Outcome, Verdict

        verdict = Verdict(outcome=Outcome.SYNTAX_ERROR)
    else:
        verdict = tool.run_all(code)
    breakdown = code_agentic_reward(verdict, tool_calls=len(calls), weights=weights)
    score = breakdown.reward
    return {
        "score": 0.0 if score is None else score,
        **{k: v for k, v in breakdown.to_dict().items() if isinstance(v, (int, float))},
    }
