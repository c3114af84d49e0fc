"""Trainers: MAGRPO (GRPO is MAGRPO with one agent), its loss, checkpoints and metric sinks."""

from collabcoder.training.trainers.magrpo import (
    MAGRPOTrainer,
    RunFolderError,
    StepReport,
    TrainResult,
    TrainSample,
    agent_roles,
    training_samples,
)

__all__ = [
    "MAGRPOTrainer",
    "RunFolderError",
    "StepReport",
    "TrainResult",
    "TrainSample",
    "agent_roles",
    "training_samples",
]
