"""Trainers: MAGRPO (GRPO is MAGRPO with one agent), its loss, checkpoints and metric sinks."""

from collabcoder.training.trainers.magrpo import (
    MAGRPOTrainer,
    StepReport,
    TrainResult,
    TrainSample,
    agent_roles,
    training_samples,
)
from collabcoder.training.trainers.resume import RunFolderError, RunStart

__all__ = [
    "MAGRPOTrainer",
    "RunFolderError",
    "RunStart",
    "StepReport",
    "TrainResult",
    "TrainSample",
    "agent_roles",
    "training_samples",
]
