"""Load a config: YAML file, then `--override`s, then legacy flags, deep-merged and validated.

Every value remembers where it was set (file and line, override or flag), so a validation
error names the place to fix, not only the key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from collabcoder.training.config.errors import ConfigError
from collabcoder.training.config.overrides import (
    LEGACY_KEYS,
    Override,
    flags_to_overrides,
    parse_override,
)
from collabcoder.training.config.schema import (
    TRAINER_SECTIONS,
    TrainConfig,
    all_key_paths,
    keys_at,
)
from collabcoder.training.config.yaml_io import dump_yaml, key_lines, load_yaml

CONFIG_FILENAME = "config.yaml"


class _Sources:
    """Dotted key path -> where its current value was set (latest setter last)."""

    def __init__(self) -> None:
        self._where: dict[str, str] = {}

    def set(self, path: str, where: str, value: Any) -> None:
        # A non-mapping value replaces everything below it; a mapping merges into it.
        if not isinstance(value, Mapping):
            for key in [k for k in self._where if k.startswith(path + ".")]:
                del self._where[key]
        self._where.pop(path, None)
        self._where[path] = where
        if isinstance(value, Mapping):
            for key, sub in value.items():
                self.set(f"{path}.{key}", where, sub)

    def find(self, path: str) -> str | None:
        """Where `path` was set: itself, else its nearest ancestor, else its latest child."""
        probe = re.sub(r"\[\d+\]", "", path)  # list items belong to their list's key
        while probe:
            if probe in self._where:
                return self._where[probe]
            probe = probe.rpartition(".")[0]
        children = [w for k, w in self._where.items() if k.startswith(path + ".") or not path]
        return children[-1] if children else None


def _plain(value: Any) -> Any:
    """YAML data OmegaConf accepts: string keys, dates as ISO text, sets as lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _nest(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    assert isinstance(out, dict)
    return out


def _trainer_of(cfg: DictConfig) -> str | None:
    present = [name for name in TRAINER_SECTIONS if cfg.get(name) is not None]
    return present[0] if len(present) == 1 else None


def _read_file(path: Path, sources: _Sources) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    duplicates: list[tuple[str, int, int]] = []
    try:
        data = load_yaml(text)
        lines = key_lines(text, duplicates)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{at}: invalid YAML: {problem}") from None
    if duplicates:
        # PyYAML silently keeps the last of two equal keys; that hides edits.
        key, first, again = duplicates[0]
        raise ConfigError(f"{path} line {again}: key '{key}' is already set on line {first}")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: a config must be a mapping of sections, got {type(data).__name__}"
        )
    for key, line in lines.items():
        sources.set(key, f"{path} line {line}", None)
    return _plain(data)


def load_config(
    path: str | os.PathLike[str] | None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """The validated config: YAML at `path`, then `overrides` (`key.path=value`), then `flags`.

    `flags` holds the legacy flags by name (`model_name`, `num_epochs`, `num_turns`,
    `turn_gradient_weights`, `output_base_dir`); None values are ignored. `path` None starts
    from the schema defaults. Raises ConfigError.
    """
    sources = _Sources()
    data = _read_file(Path(path), sources) if path is not None else {}
    origin = str(path) if path is not None else "the defaults"
    return _build(data, overrides, flags or {}, sources, origin)


def config_from_dict(
    data: Mapping[str, Any],
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Like `load_config` for an in-memory mapping (tests, programmatic runs)."""
    sources = _Sources()
    for key, value in data.items():
        sources.set(str(key), "the given mapping", value)
    return _build(_plain(data), overrides, flags or {}, sources, "the given mapping")


def _build(
    data: Mapping[str, Any],
    overrides: Sequence[str],
    flags: Mapping[str, Any],
    sources: _Sources,
    origin: str,
) -> TrainConfig:
    try:
        cfg = OmegaConf.create(dict(data))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{origin}: {exc}") from None

    def apply(item: Override) -> DictConfig:
        try:
            merged = OmegaConf.merge(cfg, OmegaConf.create(_nest(item.key, _plain(item.value))))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"cannot apply {item.origin}: {exc}") from None
        assert isinstance(merged, DictConfig)
        sources.set(item.key, item.origin, item.value)
        return merged

    # Overrides one at a time: a legacy alias (num_epochs=...) needs the trainer section as it
    # stands at that point.
    for text in overrides:
        cfg = apply(parse_override(text, _trainer_of(cfg)))
    for item in flags_to_overrides(flags, _trainer_of(cfg)):
        cfg = apply(item)

    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        # `${...}` interpolations and `???` are OmegaConf features; name the key that failed.
        key = str(getattr(exc, "full_key", "") or "")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = sources.find(key) or origin
        raise ConfigError(f"cannot resolve '{key}' in {where}: {reason}") from None
    try:
        return TrainConfig.model_validate(container)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources, origin)) from None


# --- error messages --------------------------------------------------------------------------

_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _dotted(loc: Sequence[int | str]) -> str:
    """('magrpo', 'turn_gradient_weights', 1) -> 'magrpo.turn_gradient_weights[1]'; union
    member tags pydantic adds (`list[str]`, `literal[...]`) are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PART.match(part):
            out += f".{part}" if out else part
    return out


# Names the reference configs used that string similarity cannot map to ours.
_RENAMED: dict[str, str] = {
    "lr": "learning_rate",
    "agent_learning_rate": "learning_rate",
    "advantage_normalization": "normalize_advantage",
    "epsilon_clip": "clip_epsilon",
    "beta": "kl_beta",
    "handoff": "external_handoff",
    "torch_dtype": "dtype",
    # PEFT's LoraConfig names.
    "rank": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
}
_TOP_LEVEL_HINTS: dict[str, str] = {
    "external": "the trainer section's external_* keys, e.g. 'magrpo.external_mode'",
    "agent_model": "'model'",
    "agents": "'<trainer>.num_agents' and 'model.agents'",
}


def suggest(path: str) -> str:
    """'; did you mean ...?' for an unknown key, else the keys valid at that level."""
    parent, _, leaf = path.rpartition(".")
    if not parent and leaf in LEGACY_KEYS:
        return f"; did you mean '{LEGACY_KEYS[leaf].replace('{trainer}', '<trainer>')}'?"
    if not parent and leaf in _TOP_LEVEL_HINTS:
        return f"; use {_TOP_LEVEL_HINTS[leaf]}"
    siblings = keys_at(parent) or []
    if _RENAMED.get(leaf) in siblings:
        return f"; did you mean '{f'{parent}.' if parent else ''}{_RENAMED[leaf]}'?"
    close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{f'{parent}.' if parent else ''}{close[0]}'?"
    # The key may live in another section (e.g. the reference's top-level `wandb:`).
    scored = sorted(
        (difflib.SequenceMatcher(None, leaf, p.rpartition(".")[2]).ratio(), p)
        for p in all_key_paths()
    )
    if scored and scored[-1][0] >= 0.85:
        return f"; did you mean '{scored[-1][1]}'?"
    where = f"under '{parent}'" if parent else "at the top level"
    return f"; valid keys {where}: {', '.join(siblings)}" if siblings else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _qualify(message: str, prefix: str, fields: set[str]) -> str:
    """Prefix the quoted section-relative key names in `message` with their section."""
    return re.sub(
        r"'([A-Za-z_][A-Za-z0-9_.]*)'",
        lambda m: f"'{prefix}{m[1]}'" if m[1].split(".")[0] in fields else m[0],
        message,
    )


def _explain(exc: ValidationError, sources: _Sources, origin: str) -> str:
    messages: list[str] = []
    value_errors: dict[str, int] = {}  # key -> index in messages
    for err in exc.errors():
        path = _dotted(err["loc"])
        where = sources.find(path) or origin
        kind = err["type"]
        if kind == "extra_forbidden":
            text = f"unknown key '{path}' in {where}{suggest(path)}"
        elif kind == "config_conflict":
            prefix = f"{path}." if path else ""
            keys = [f"{prefix}{k}" for k in (err.get("ctx") or {}).get("keys", [])]
            msg = err["msg"]
            if path:
                # Section validators name their keys relative to the section: make them full.
                msg = _qualify(msg, prefix, set(keys_at(path) or []))
            placed = [f"'{k}' from {sources.find(k) or origin}" for k in keys]
            text = msg + (f" ({'; '.join(placed)})" if placed else f" in {origin}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if path in value_errors:
                # Union types report each alternative; fold them into one line per key.
                messages[value_errors[path]] += f"; or {msg[:1].lower()}{msg[1:]}"
                continue
            value_errors[path] = len(messages)
            text = f"invalid value for '{path}' in {where}: {msg} (got {_short(err['input'])})"
        messages.append(text)
    if len(messages) == 1:
        return messages[0]
    return f"{len(messages)} problems in the config:\n" + "\n".join(f"  - {m}" for m in messages)


# --- writing ---------------------------------------------------------------------------------


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain data (YAML-safe), without the trainer sections that are not set."""
    data = cfg.model_dump(mode="json")
    for name in TRAINER_SECTIONS:
        if data.get(name) is None:
            data.pop(name, None)
    return data


def config_to_yaml(cfg: TrainConfig) -> str:
    return dump_yaml(config_to_dict(cfg))


def save_config(cfg: TrainConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Write `out_dir/config.yaml` atomically (temp file + os.replace); returns its path.

    A crash mid-write leaves the previous file (or none), never a truncated config that a
    resumed run would load.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONFIG_FILENAME
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{CONFIG_FILENAME}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it owner-only; a config is not a secret
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(config_to_yaml(cfg))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
