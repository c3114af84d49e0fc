"""Load a config (YAML file, then `--override`s, then legacy flags), validate it, save it.

Overrides are OmegaConf dotlist entries (`magrpo.num_turns=2`, the value read as YAML by
OmegaConf), applied with `OmegaConf.update`, which merges mappings; OmegaConf also resolves
`${...}` interpolations. The reference scripts accepted `model_name=...` and then ignored it;
here the legacy names are aliases for their real key, in `--override` and as flags alike.

Every value remembers where it was set (file line, override or flag), so an error names the
place to fix, not only the key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from collabcoder.analyzers.files import atomic_write
from collabcoder.training.config.schema import (
    TRAINER_SECTIONS,
    TrainConfig,
    keys_at,
    schema_fields,
    takes_only_strings,
)

CONFIG_FILENAME = "config.yaml"

# Legacy names -> real key path; "{trainer}" is the config's trainer section (grpo / magrpo).
LEGACY_KEYS: dict[str, str] = {
    "model_name": "model.name",
    "num_epochs": "{trainer}.num_train_epochs",
    "num_turns": "{trainer}.num_turns",
    "turn_gradient_weights": "{trainer}.turn_gradient_weights",
    "output_base_dir": "output.base_dir",
}


class ConfigError(ValueError):
    """A config file, override or legacy flag is wrong; the message says where and how to fix it.

    A ValueError so callers that only know "bad input" still catch it; the CLI prints the
    message alone (no traceback) and exits with status 2.
    """


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader plus YAML 1.2 floats (`3e-5` is a string in PyYAML's YAML 1.1), as in
    OmegaConf's own loader, so a file and an override read a value alike."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class KeySources:
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


def plain_data(value: Any) -> Any:
    """Data OmegaConf accepts: string keys, dates and paths as text, sets and tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain_data(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if isinstance(value, PurePath) else value


# --- reading ---------------------------------------------------------------------------------


def _key_lines(node: yaml.Node | None, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(dotted path, 1-based line) of every mapping key in file order; lists are not entered."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                path = prefix + str(key_node.value)
                yield path, key_node.start_mark.line + 1
                yield from _key_lines(value_node, path + ".")


def read_config_file(path: Path, sources: KeySources) -> dict[str, Any]:
    """A YAML config file's mapping; records each key's line in `sources`. ConfigError names
    the file (and line) of a missing file, bad YAML or a duplicate key."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    loader = _YamlLoader(text)  # one parse gives the nodes (lines) and the data
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{at}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    seen: dict[str, int] = {}
    for key, line in _key_lines(node):
        if key in seen:  # PyYAML silently keeps the last of two equal keys; that hides edits
            raise ConfigError(f"{path} line {line}: key '{key}' is already set on line {seen[key]}")
        seen[key] = line
        sources.set(key, f"{path} line {line}", None)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: a config must be a mapping of sections, got {type(data).__name__}"
        )
    return dict(plain_data(data))


def parse_value(raw: str) -> Any:
    """An override value as OmegaConf's dotlist reads it: `[1,2]` -> list, `True` -> bool,
    `3e-5` -> float, `test[:20]` -> str; text that is not YAML on its own stays text."""
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={raw}"]))
    except yaml.YAMLError:
        return raw
    assert isinstance(parsed, dict)
    return parsed["value"]


def _override_value(path: str, raw: str) -> Any:
    """String-only keys keep the text as typed (`model.name=1.5`, `output.base_dir=runs/a #1`),
    quotes removed, `null` still None; other keys take the YAML value."""
    if not takes_only_strings(path):
        return parse_value(raw)
    text = raw.strip()
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
    return parse_value(text) if quoted or text in ("null", "~") else text


def _real_key(key: str, cfg: DictConfig, origin: str) -> str:
    """A legacy alias's real path, with the config's trainer section filled in."""
    target = LEGACY_KEYS.get(key, key)
    if "{trainer}" in target:
        present = [name for name in TRAINER_SECTIONS if cfg.get(name) is not None]
        if len(present) != 1:
            raise ConfigError(
                f"{origin} sets a trainer setting, but the config has no trainer section "
                "('grpo' or 'magrpo')"
            )
        target = target.format(trainer=present[0])
    return target


def _flag_text(name: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        return f"--{name} " + " ".join(str(v) for v in value)
    return f"--{name} {value}"


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
    sources = KeySources()
    data = read_config_file(Path(path), sources) if path is not None else {}
    origin = str(path) if path is not None else "the defaults"
    return _build(data, overrides, flags or {}, sources, origin)


def config_from_dict(
    data: Mapping[str, Any],
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Like `load_config` for an in-memory mapping (tests, programmatic runs)."""
    sources = KeySources()
    for key, value in data.items():
        sources.set(str(key), "the given mapping", value)
    return _build(plain_data(data), overrides, flags or {}, sources, "the given mapping")


def _build(
    data: Mapping[str, Any],
    overrides: Sequence[str],
    flags: Mapping[str, Any],
    sources: KeySources,
    origin: str,
) -> TrainConfig:
    try:
        cfg = OmegaConf.create(dict(data))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{origin}: {exc}") from None

    def apply(path: str, value: Any, where: str) -> None:
        try:
            OmegaConf.update(cfg, path, plain_data(value), merge=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"cannot apply {where}: {exc}") from None
        sources.set(path, where, value)

    # One at a time, in order: an alias (num_epochs=...) needs the trainer section as it stands.
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*", key.strip()):
            raise ConfigError(
                f"bad --override {text!r}: expected KEY.PATH=VALUE, e.g. magrpo.num_turns=2"
            )
        where = f"--override {text}"
        path = _real_key(key.strip(), cfg, where)
        apply(path, _override_value(path, raw), where)
    for name, value in flags.items():
        if value is None:
            continue
        if name not in LEGACY_KEYS:
            known = ", ".join(sorted(LEGACY_KEYS))
            raise ConfigError(f"unknown legacy flag {name!r}; known flags: {known}")
        where = _flag_text(name, value)
        apply(_real_key(name, cfg, where), value, where)

    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = sources.find(key) or origin
        raise ConfigError(f"cannot resolve '{key}' in {where}: {reason}") from None
    try:
        return TrainConfig.model_validate(container)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources, origin)) from None


# --- error messages --------------------------------------------------------------------------

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
    here = f"{parent}." if parent else ""
    if not parent and leaf in LEGACY_KEYS:
        return f"; did you mean '{LEGACY_KEYS[leaf].replace('{trainer}', '<trainer>')}'?"
    if not parent and leaf in _TOP_LEVEL_HINTS:
        return f"; use {_TOP_LEVEL_HINTS[leaf]}"
    siblings = keys_at(parent) or []
    if _RENAMED.get(leaf) in siblings:
        return f"; did you mean '{here}{_RENAMED[leaf]}'?"
    close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{here}{close[0]}'?"
    # The key may live in another section (e.g. the reference's top-level `wandb:`).
    scored = sorted(
        (difflib.SequenceMatcher(None, leaf, p.rpartition(".")[2]).ratio(), p)
        for p in schema_fields()
    )
    if scored and scored[-1][0] >= 0.85:
        return f"; did you mean '{scored[-1][1]}'?"
    where = f"under '{parent}'" if parent else "at the top level"
    return f"; valid keys {where}: {', '.join(siblings)}" if siblings else ""


def dotted_key(loc: Sequence[int | str]) -> str:
    """('magrpo', 'turn_gradient_weights', 1) -> 'magrpo.turn_gradient_weights[1]'; the union
    member tags pydantic adds (`list[str]`, `literal[...]`) are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
    return out


def short_repr(value: Any) -> str:
    """`repr(value)` cut to 60 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _qualify(message: str, prefix: str, fields: set[str]) -> str:
    """Prefix the quoted section-relative key names in `message` with their section."""
    return re.sub(
        r"'([A-Za-z_][A-Za-z0-9_.]*)'",
        lambda m: f"'{prefix}{m[1]}'" if m[1].split(".")[0] in fields else m[0],
        message,
    )


def _explain(exc: ValidationError, sources: KeySources, origin: str) -> str:
    messages: list[str] = []
    value_errors: dict[str, int] = {}  # key -> index in messages
    for err in exc.errors():
        path = dotted_key(err["loc"])
        where = sources.find(path) or origin
        if err["type"] == "extra_forbidden":
            text = f"unknown key '{path}' in {where}{suggest(path)}"
        elif err["type"] == "config_conflict":
            prefix = f"{path}." if path else ""
            keys = [f"{prefix}{k}" for k in (err.get("ctx") or {}).get("keys", [])]
            # Section validators name their keys relative to the section: make them full.
            msg = _qualify(err["msg"], prefix, set(keys_at(path) or [])) if path else err["msg"]
            placed = [f"'{k}' from {sources.find(k) or origin}" for k in keys]
            text = msg + (f" ({'; '.join(placed)})" if placed else f" in {origin}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if path in value_errors:
                # Union types report each alternative; fold them into one line per key.
                messages[value_errors[path]] += f"; or {msg[:1].lower()}{msg[1:]}"
                continue
            value_errors[path] = len(messages)
            text = f"invalid value for '{path}' in {where}: {msg} (got {short_repr(err['input'])})"
        messages.append(text)
    if len(messages) == 1:
        return messages[0]
    return f"{len(messages)} problems in the config:\n" + "\n".join(f"  - {m}" for m in messages)


# --- writing ---------------------------------------------------------------------------------


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain data (YAML-safe), without the trainer sections that are not set."""
    return cfg.model_dump(
        mode="json", exclude={name for name in TRAINER_SECTIONS if getattr(cfg, name) is None}
    )


def config_to_yaml(cfg: TrainConfig) -> str:
    """Block-style YAML in the schema's key order."""
    return yaml.safe_dump(
        config_to_dict(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def save_config(cfg: TrainConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Write `out_dir/config.yaml` atomically: a crash mid-write leaves the previous file (or
    none), never a truncated config that a resumed run would load. Returns its path."""
    return atomic_write(Path(out_dir) / CONFIG_FILENAME, config_to_yaml(cfg))
