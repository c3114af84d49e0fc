"""`collab-train agentic export --format verl`: verl's RL parquet and its tool config.

Row schema (verl's documented RL data format, as in its `examples/data_preprocess/
gsm8k_multiturn_w_tool.py`):

    data_source   str
    prompt        [{role, content}]       chat messages; verl applies the chat template
    ability       "code"
    reward_model  {style: "rule", ground_truth: str}   JSON {inputs, outputs}
    extra_info    {split, index, query_id, need_tools_kwargs: true,
                   tools_kwargs: {<tool name>: {create_kwargs: {inputs, outputs, query_id}}}}
    agent_name    "tool_agent"            verl's multi-turn agent loop

and a tool config (`tools: [{class_name, config, tool_schema}]`) whose class is
`collabcoder.training.agentic.verl_tool.CodeAgenticVerlTool`. `check_verl_rows` and
`check_verl_tool_config` check both files against that schema.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from collabcoder.analyzers.files import atomic_write
from collabcoder.training.agentic import prompts
from collabcoder.training.agentic.tool import ToolConfig
from collabcoder.training.data.tasks import CodeAgenticTask

TOOL_CLASS = "collabcoder.training.agentic.verl_tool.CodeAgenticVerlTool"
DATA_SOURCE = "collabcoder/code_agentic"


def verl_row(
    task: CodeAgenticTask,
    tool_config: ToolConfig,
    split: str,
    index: int,
    data_source: str = DATA_SOURCE,
) -> dict[str, Any]:
    cases = task.io_suite.cases
    truth = {"inputs": [c.stdin for c in cases], "outputs": [c.expected_stdout for c in cases]}
    return {
        "data_source": data_source,
        "prompt": [
            {"role": "system", "content": task.prompt},
            {
                "role": "user",
                "content": prompts.user_prompt(task.question, len(cases), tool_config.name),
            },
        ],
        "ability": "code",
        "reward_model": {"style": "rule", "ground_truth": json.dumps(truth)},
        "extra_info": {
            "split": split,
            "index": index,
            "query_id": task.query_id,
            "need_tools_kwargs": True,
            "tools_kwargs": {
                tool_config.name: {"create_kwargs": {**truth, "query_id": task.query_id}}
            },
        },
        "agent_name": "tool_agent",
    }


def verl_tool_config(tool_config: ToolConfig) -> dict[str, Any]:
    return {
        "tools": [
            {
                "class_name": TOOL_CLASS,
                "config": {"type": "native", **tool_config.config.model_dump()},
                "tool_schema": tool_config.tool_schema,
            }
        ]
    }


class VerlSchemaError(ValueError):
    """An exported row or tool config that does not match verl's schema; names row and key."""


def check_verl_rows(rows: Sequence[dict[str, Any]], tool_names: set[str]) -> None:
    for i, row in enumerate(rows):

        def fail(key: str, problem: str, i: int = i) -> VerlSchemaError:
            return VerlSchemaError(f"verl row {i}: key {key!r} {problem}")

        for key, kind in (
            ("data_source", str),
            ("ability", str),
            ("prompt", list),
            ("reward_model", dict),
            ("extra_info", dict),
        ):
            if not isinstance(row.get(key), kind):
                raise fail(key, f"must be a {kind.__name__}")
        for j, m in enumerate(row["prompt"]):
            if not (
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)
            ):
                raise fail(f"prompt[{j}]", "must be {role: str, content: str}")
        rm = row["reward_model"]
        if rm.get("style") != "rule" or not isinstance(rm.get("ground_truth"), str):
            raise fail("reward_model", "must be {style: 'rule', ground_truth: str}")
        kwargs = row["extra_info"].get("tools_kwargs")
        if not isinstance(kwargs, dict) or set(kwargs) - tool_names:
            raise fail("extra_info.tools_kwargs", f"must map tool names {sorted(tool_names)}")
        for name, entry in kwargs.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("create_kwargs"), dict):
                raise fail(f"extra_info.tools_kwargs.{name}", "must be {create_kwargs: {...}}")


def check_verl_tool_config(data: Any) -> set[str]:
    """The tool names of a verl tool config; raises naming the key that is wrong."""
    tools = data.get("tools") if isinstance(data, dict) else None
    if not isinstance(tools, list) or not tools:
        raise VerlSchemaError("verl tool config: key 'tools' must be a non-empty list")
    names = set()
    for i, tool in enumerate(tools):
        where = f"verl tool config: tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("class_name"), str):
            raise VerlSchemaError(f"{where}.class_name must be a string")
        schema = tool.get("tool_schema")
        function = schema.get("function") if isinstance(schema, dict) else None
        if schema is None or schema.get("type") != "function" or not isinstance(function, dict):
            raise VerlSchemaError(f"{where}.tool_schema must be {{type: function, function}}")
        params = function.get("parameters")
        if (
            not isinstance(function.get("name"), str)
            or not isinstance(params, dict)
            or (params.get("type") != "object" or not isinstance(params.get("properties"), dict))
        ):
            raise VerlSchemaError(f"{where}.tool_schema.function needs name and object parameters")
        if not isinstance(tool.get("config", {}), dict):
            raise VerlSchemaError(f"{where}.config must be a mapping")
        names.add(function["name"])
    return names


def export_verl(
    tasks: Sequence[CodeAgenticTask],
    tool_config: ToolConfig,
    out_dir: str | Path,
    *,
    val_fraction: float = 0.0,
    data_source: str = DATA_SOURCE,
) -> dict[str, Path]:
    """Write `train.parquet` (+ `val.parquet` with `val_fraction` > 0) and `tool_config.yaml`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    n_val = round(len(tasks) * val_fraction)
    splits = {"train": tasks[: len(tasks) - n_val], "val": tasks[len(tasks) - n_val :]}
    config = verl_tool_config(tool_config)
    names = check_verl_tool_config(config)
    written: dict[str, Path] = {}
    for split, items in splits.items():
        if not items:
            continue
        rows = [verl_row(t, tool_config, split, i, data_source) for i, t in enumerate(items)]
        check_verl_rows(rows, names)
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        written[split] = atomic_write(out / f"{split}.parquet", buf.getvalue())
    written["tool_config"] = atomic_write(
        out / "tool_config.yaml", yaml.safe_dump(config, sort_keys=False)
    )
    return written
