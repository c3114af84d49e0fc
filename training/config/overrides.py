"""`--override key.path=value` parsing and the legacy flags.

Values are YAML literals (`[1.5,0.5]`, `True`, `3e-5`, `null`), except where the schema says the
key takes only strings: there the text is kept as typed (quotes removed), so `model.name=1.5`,
`dataset.train_split=test[:20]` or `output.base_dir=runs/a #1` never turn into a number, a list
or a truncated comment.

The reference scripts accepted `model_name=...` and then silently ignored it; here the legacy
names are aliases for their real key, in `--override` and as flags alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from collabcoder.training.config.errors import ConfigError
from collabcoder.training.config.schema import takes_only_strings
from collabcoder.training.config.yaml_io import load_yaml

# Legacy names -> real key path; "{trainer}" is the config's trainer section (grpo / magrpo).
LEGACY_KEYS: dict[str, str] = {
    "model_name": "model.name",
    "num_epochs": "{trainer}.num_train_epochs",
    "num_turns": "{trainer}.num_turns",
    "turn_gradient_weights": "{trainer}.turn_gradient_weights",
    "output_base_dir": "output.base_dir",
}

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class Override:
    """One `key=value` setting and the text it came from (for error messages)."""

    key: str
    value: Any
    origin: str


def parse_value(raw: str) -> Any:
    """A YAML literal: `[1,2]` -> list, `True` -> bool, `3e-5` -> float, `test[:20]` -> str."""
    try:
        return load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        # Not valid YAML on its own (e.g. `a: b: c`): the text itself is the value.
        return raw


def _unquote(raw: str) -> str:
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        parsed = parse_value(text)
        if isinstance(parsed, str):
            return parsed
    return text


def coerce_for_key(key: str, raw: str) -> Any:
    """The override value for `key`: raw text for string-only keys, else a YAML literal."""
    if takes_only_strings(key):
        # `null` still means None so optional strings can be cleared.
        return None if raw.strip() in ("null", "~") else _unquote(raw)
    return parse_value(raw)


def split_override(text: str) -> tuple[str, str]:
    """`"a.b=c"` -> `("a.b", "c")`, or a ConfigError that shows the expected shape."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise ConfigError(
            f"bad --override {text!r}: expected KEY.PATH=VALUE, e.g. magrpo.num_turns=2"
        )
    return key, raw


def resolve_key(key: str, trainer: str | None, origin: str) -> str:
    """Map a legacy alias to its real path, filling in the trainer section."""
    target = LEGACY_KEYS.get(key, key)
    if "{trainer}" in target:
        if trainer is None:
            raise ConfigError(
                f"{origin} sets a trainer setting, but the config has no trainer section "
                "('grpo' or 'magrpo')"
            )
        target = target.format(trainer=trainer)
    return target


def parse_override(text: str, trainer: str | None) -> Override:
    key, raw = split_override(text)
    origin = f"--override {text}"
    path = resolve_key(key, trainer, origin)
    return Override(key=path, value=coerce_for_key(path, raw), origin=origin)


def _flag_text(name: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        return f"--{name} " + " ".join(str(v) for v in value)
    return f"--{name} {value}"


def flags_to_overrides(flags: Mapping[str, Any], trainer: str | None) -> list[Override]:
    """Legacy flags (`model_name`, `num_epochs`, ...; None = not given) as overrides."""
    out: list[Override] = []
    for name, value in flags.items():
        if value is None:
            continue
        if name not in LEGACY_KEYS:
            known = ", ".join(sorted(LEGACY_KEYS))
            raise ConfigError(f"unknown legacy flag {name!r}; known flags: {known}")
        origin = _flag_text(name, value)
        if isinstance(value, tuple):
            value = list(value)
        elif not isinstance(value, list | bool | int | float | str):
            value = str(value)  # paths and the like
        out.append(Override(key=resolve_key(name, trainer, origin), value=value, origin=origin))
    return out
