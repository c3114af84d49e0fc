"""The server's commands (`workspace/executeCommand`, docs/protocol.md): names and typed
arguments.

pygls structures each command argument into the class its handler's signature names; a payload
that does not fit is answered with an Invalid Params error that says which field is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from attrs import validators
from cattrs.v import format_exception
from lsprotocol import types
from pygls.protocol import default_converter

RUN_COMMAND = "collab.runFeedbackIterations"
ACCEPT_COMMAND = "collab.acceptCompletion"
STATS_COMMAND = "collab.getStats"


@attrs.frozen
class RunArguments:
    """`collab.runFeedbackIterations`: the site, how many feedback iterations (the setting
    `maxIterations` when left out), and the token that tags the run's notifications."""

    uri: str
    position: types.Position
    token: str | None = None
    iterations: int | None = attrs.field(
        default=None, validator=validators.optional(validators.ge(0))
    )


@attrs.frozen
class AcceptArguments:
    """`collab.acceptCompletion`: `{id}` an inline suggestion was accepted; `{run}` a candidate
    of that feedback run was applied."""

    id: str | None = None
    run: str | None = None


USAGE: dict[type[Any], str] = {
    RunArguments: f"{RUN_COMMAND} takes one object {{uri, position: {{line, character}}, "
    "iterations?: int >= 0, token}",
    AcceptArguments: f"{ACCEPT_COMMAND} takes one object {{id}} or {{run}}",
}


def _describe(exc: BaseException, type_: Any) -> str:
    # A validator's own message ("'iterations' must be >= 0: -1") says more than cattrs' one.
    return str(exc) if type_ is None else format_exception(exc, type_)


def _readable(converter: cattrs.Converter, cls: type[Any]) -> Any:
    structure = converter.get_structure_hook(cls)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(USAGE[cls])
        try:
            return structure(value, cls)
        except (cattrs.BaseValidationError, TypeError, KeyError) as exc:
            problems = (cattrs.transform_error(exc, format_exception=_describe)
                        if isinstance(exc, cattrs.BaseValidationError) else [str(exc)])
            raise ValueError(f"{'; '.join(problems)} ({USAGE[cls]})") from None

    return hook


def collab_converter() -> cattrs.Converter:
    """pygls' converter, with readable errors for our command arguments."""
    converter = default_converter()
    for cls in USAGE:
        converter.register_structure_hook(cls, _readable(converter, cls))
    return converter


def insertion(uri: str, at: types.Position, text: str) -> dict[str, Any]:
    """A `WorkspaceEdit`-style insertion at `at`, returned to the client, never applied."""
    point = {"line": at.line, "character": at.character}
    return {"uri": uri, "range": {"start": point, "end": dict(point)}, "newText": text}
