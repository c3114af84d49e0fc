"""YAML reading and writing for configs.

PyYAML follows YAML 1.1, where `3e-5` (no dot) is a *string*: the reference configs had to write
`1.0e-5`. Our loader also resolves YAML 1.2 floats, for files and `--override` values alike.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader plus YAML 1.2 floats (`3e-5`, `1E6`)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader subclass: no arbitrary objects


def key_lines(text: str, duplicates: list[tuple[str, int, int]] | None = None) -> dict[str, int]:
    """1-based line of every mapping key, by dotted path (list items are not descended).

    Keys that appear twice in one mapping are appended to `duplicates` as
    (path, first line, repeated line).
    """
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            path = prefix + str(key_node.value)
            line = key_node.start_mark.line + 1
            if path in lines and duplicates is not None:
                duplicates.append((path, lines[path], line))
            lines[path] = line
            walk(value_node, path + ".")

    root = yaml.compose(text, Loader=ConfigLoader)
    if root is not None:
        walk(root, "")
    return lines


def dump_yaml(data: Any) -> str:
    """Block-style YAML in the schema's key order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
