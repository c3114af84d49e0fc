"""The whole journey: collab-train writes agents, the language server's multi-agent mode loads
them from the run folder and writes code with them through the shared turn protocol."""

from __future__ import annotations

from pathlib import Path

import torch
from test_trainer_magrpo import code_env, make_config

from collabcoder.server.lsp.team import AgentTeam, enclosing_function
from collabcoder.training.data import load_tasks
from collabcoder.training.trainers import MAGRPOTrainer


async def test_trained_lora_agents_serve_a_completion(tiny_model_dir: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "magrpo"
    cfg = make_config(tiny_model_dir, run, "magrpo", model={"agents": "shared_lora", "lora": {"r": 4}})
    MAGRPOTrainer(cfg, code_env(cfg), load_tasks("humaneval", "test[:2]")).train()

    assert AgentTeam.is_team(str(run))
    team = AgentTeam(run, dtype="float32")
    assert team.roles == ("aux", "main")
    prefix = "def double(x: int) -> int:\n    \"\"\"Return 2 * x.\"\"\"\n    "
    where = enclosing_function(prefix)
    assert where is not None and where.name == "double"
    turns = []

    async def on_turn(turn: object) -> None:
        turns.append(turn)

    last = await team.write_function(prefix, where, turns=2, max_tokens=8, on_turn=on_turn)
    assert last.turn == 2 and len(turns) == 2  # both turns ran, each agent answered
    assert isinstance(last.completion, str)
