"""An empty model answer (nothing, or only whitespace) once ended as no suggestion with status
"idle" and no `lastError`: the user could not tell it from a slow or broken setup. Now the
status bar and `collab.getStats` say the model returned an empty completion.

The real server over stdio against a scripted endpoint on 127.0.0.1 (`fixtures/stub_endpoint`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fixtures.lsp_helpers import inline, open_doc, recorder, running_server, stats
from fixtures.stub_endpoint import StubRequest, chat_json, send, stream_text
from fixtures.stub_endpoint import stub_endpoint as endpoint


@pytest.mark.parametrize("reply", ["streamed_whitespace", "streamed_empty_text", "json_empty"])
async def test_an_empty_answer_says_why_nothing_was_shown(tmp_path: Path, reply: str) -> None:
    async def empty(request: StubRequest, writer: asyncio.StreamWriter) -> None:
        if reply == "streamed_whitespace":
            await stream_text(writer, ["  ", "\n", " \n"])
        elif reply == "streamed_empty_text":  # events whose content is ""
            await stream_text(writer, ["", ""])
        else:  # a non-streaming reply whose content is ""
            await send(writer, 200, chat_json(""))

    options = {"backend": "openai", "model": "tiny", "analyzers": [], "debounceMs": 0,
               "latencyBudgetMs": 2000}
    async with endpoint(empty) as url, running_server(
        {**options, "endpointUrl": url}, tmp_path
    ) as client:
        rec = recorder(client)
        uri = (tmp_path / "a.py").as_uri()
        open_doc(client, uri, "x = 1\n\n")
        assert await inline(client, uri, 1, 0) == []
        s = await stats(client)
    assert s["lastErrors"] and "returned an empty completion" in s["lastErrors"][-1]
    assert "(tiny)" in s["lastErrors"][-1]
    assert rec.status[-1]["state"] == "error"
    assert rec.status[-1]["lastError"] == s["lastErrors"][-1]
    assert s["timings"][-1]["outcome"] == "empty"
