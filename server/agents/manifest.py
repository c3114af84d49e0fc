"""The agents manifest (`agents.json`): which trained agents a folder holds and how they talk.

Written by `collab-train` at the end of a run (and with every checkpoint), read by the language
server's multi-agent mode. See docs/protocol.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collabcoder.analyzers.files import atomic_write

MANIFEST_NAME = "agents.json"
FORMAT: Literal["collabcoder-agents"] = "collabcoder-agents"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the problem."""


class AgentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["aux", "main"]
    path: str  # relative to the manifest's folder
    kind: Literal["full", "lora"] = "full"
    base_model: str | None = None  # required for lora

    @model_validator(mode="after")
    def _lora_needs_base(self) -> AgentEntry:
        if self.kind == "lora" and not self.base_model:
            raise ValueError(f"agent '{self.role}' is a LoRA adapter but has no base_model")
        return self


class TurnProtocol(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_turns: int = Field(1, ge=1)
    external_mode: Literal[
        "level_feedback", "level_passed", "passed", "plain", "expert_edits"
    ] = "level_feedback"
    original_prompt: bool = True
    previous_response: bool = True
    sandbox_slice: int | None = None


class AgentsManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["collabcoder-agents"] = FORMAT
    version: Literal[1] = 1
    agents: tuple[AgentEntry, ...]
    turn_protocol: TurnProtocol = Field(default_factory=lambda: TurnProtocol(num_turns=1))
    trained_with: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _roles(self) -> AgentsManifest:
        roles = [a.role for a in self.agents]
        if roles.count("main") != 1 or len(roles) != len(set(roles)):
            raise ValueError(f"needs exactly one 'main' agent and at most one 'aux', got {roles}")
        return self

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    def agent(self, role: str) -> AgentEntry | None:
        return next((a for a in self.agents if a.role == role), None)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        target = Path(folder) / MANIFEST_NAME
        atomic_write(target, self.model_dump_json(indent=2) + "\n")
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> AgentsManifest:
        path = Path(folder) / MANIFEST_NAME
        try:
            manifest = cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise ManifestError(f"{path}: no agents manifest in this folder") from exc
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ManifestError(f"{path}: invalid agents manifest: {exc}") from exc
        for entry in manifest.agents:
            if not (Path(folder) / entry.path).is_dir():
                raise ManifestError(f"{path}: agent '{entry.role}' folder '{entry.path}' is missing")
        return manifest


def is_agents_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()
