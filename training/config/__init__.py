"""Training configs: typed schema, YAML loading with overrides and legacy flags, saving.

`load_config(path, overrides, flags)` is the entry point; CLI commands use
`collabcoder.training.config.cli_options` for the shared options.
"""

from collabcoder.training.config.errors import ConfigError
from collabcoder.training.config.loader import (
    CONFIG_FILENAME,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
    save_config,
)
from collabcoder.training.config.overrides import LEGACY_KEYS, parse_value
from collabcoder.training.config.schema import (
    TRAINER_SECTIONS,
    DatasetConfig,
    GenerationConfig,
    GroupRelativeSection,
    GRPOSection,
    LoggingConfig,
    LoraSettings,
    MAGRPOSection,
    ModelConfig,
    OutputConfig,
    TrainConfig,
    VllmSettings,
    WandbSettings,
)

__all__ = [
    "CONFIG_FILENAME",
    "LEGACY_KEYS",
    "TRAINER_SECTIONS",
    "ConfigError",
    "DatasetConfig",
    "GRPOSection",
    "GenerationConfig",
    "GroupRelativeSection",
    "LoggingConfig",
    "LoraSettings",
    "MAGRPOSection",
    "ModelConfig",
    "OutputConfig",
    "TrainConfig",
    "VllmSettings",
    "WandbSettings",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "parse_value",
    "save_config",
]
