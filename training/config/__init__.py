"""Training configs: the typed schema (`schema`), loading with overrides and legacy flags and
saving (`load`), and the options every config-taking command shares (`cli_options`)."""

from collabcoder.training.config.load import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
    parse_value,
    save_config,
)
from collabcoder.training.config.schema import LoggingConfig, ModelConfig, TrainConfig

__all__ = [
    "ConfigError",
    "LoggingConfig",
    "ModelConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "parse_value",
    "save_config",
]
