"""The language server's pure parts: settings, the completion site, clean-up, the cache."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.workspace import TextDocument

from collabcoder.server.lsp.context import (
    WINDOW_STEP_LINES,
    Mode,
    completion_mode,
    split_at,
    trim_context,
)
from collabcoder.server.lsp.documents import Documents, editor_environment
from collabcoder.server.lsp.postprocess import fit_to_cursor
from collabcoder.server.lsp.settings import Settings, parse_settings
from collabcoder.server.lsp.telemetry import RedactingFilter

# ---- settings ---------------------------------------------------------------------------------


def test_defaults_match_the_protocol_table() -> None:
    wire = Settings().to_wire()
    assert wire == {
        "backend": "llamacpp", "endpointUrl": "", "model": "smollm2-135m-instruct",
        "fimTemplate": "auto", "analyzers": ["syntax", "mypy", "signature", "hallucination", "behaviour"],
        "maxIterations": 3, "latencyBudgetMs": 4000, "debounceMs": 150,
        "enabledLanguages": ["python"], "inlineCompletions": {"enabled": True},
        "pythonPath": "", "maxTokens": 0,
    }  # fmt: skip


def test_settings_accept_nested_and_dotted_keys_and_ignore_extension_only_ones() -> None:
    nested, errors = parse_settings({"inlineCompletions": {"enabled": False},
                                     "server": {"pythonPath": "/x"}, "apiKey": "k",
                                     "trace": {"server": "verbose"}})
    dotted, more = parse_settings({"inlineCompletions.enabled": False})
    assert not nested.inline_completions.enabled and not dotted.inline_completions.enabled
    assert errors == more == []


def test_each_bad_value_falls_back_to_its_default_with_a_message_that_says_why() -> None:
    settings, errors = parse_settings({
        "backend": "olama", "fimTemplate": "starcoder", "analyzers": ["mypy", "mypyy"],
        "latencyBudgetMs": "soon", "model": "m", "modle": "x", "unrelatedKey": 1,
    })  # fmt: skip
    assert settings.backend == "llamacpp" and settings.model == "m"
    assert settings.fim_template == "auto" and settings.latency_budget_ms == 4000
    text = "\n".join(errors)
    assert "'collab.backend' = 'olama'" in text and "'openai'" in text
    assert "did you mean 'starcoder2'" in text
    assert "did you mean 'mypy'" in text
    assert "'collab.latencyBudgetMs'" in text
    assert "did you mean 'collab.model'" in text
    assert "unrelatedKey" not in text  # far from every known key: ignored quietly
    assert len(errors) == 5


def test_analyzer_aliases_are_canonical() -> None:
    settings, errors = parse_settings({"analyzers": ["mypy_analyzer_v1", "syntax", "mypy"]})
    assert settings.analyzers == ("mypy", "syntax") and errors == []


# ---- the site ---------------------------------------------------------------------------------


def test_split_at_counts_utf16_units() -> None:
    doc = TextDocument("file:///t.py", 'a = "😀你"; b\nc = 1\n')
    # 😀 is two UTF-16 units: character 9 is right after the closing quote.
    prefix, suffix = split_at(doc, types.Position(line=0, character=9))
    assert prefix == 'a = "😀你"' and suffix == "; b\nc = 1\n"
    prefix, suffix = split_at(doc, types.Position(line=2, character=0))
    assert prefix.endswith("c = 1\n") and suffix == ""


@pytest.mark.parametrize(
    ("prefix", "suffix", "mode"),
    [
        ("x = foo", "\n", "single"),  # mid-line after text
        ("print(", ")\n", "single"),  # only closers to the right
        ("x = f(a,\n      ", "\n", "single"),  # inside brackets
        ("s = 'abc", "\n", "single"),  # inside a string
        ("def f():\n    ", "\n", "multi"),  # an empty line in a block
        ("def f():", "\n", "multi"),  # right after the colon
        ("import os\n", "", "multi"),  # an empty line at module level
        ("x = ", "y\n", "single"),  # text to the right
    ],
)
def test_completion_mode(prefix: str, suffix: str, mode: str) -> None:
    assert completion_mode(prefix, suffix) == mode


def test_trim_context_keeps_the_cursor_and_cuts_at_line_starts() -> None:
    prefix = "".join(f"line_{i} = {i}\n" for i in range(1000)) + "x = "
    suffix = "".join(f"after_{i} = {i}\n" for i in range(1000))
    head, tail = trim_context(prefix, suffix, 200)
    assert prefix.endswith(head) and suffix.startswith(tail)
    assert head.startswith("line_") and head.endswith("x = ")  # whole lines, up to the cursor
    assert tail.startswith("after_0 = 0\n")
    assert (tail + "\n") in suffix and suffix.startswith(tail + "\n")  # whole lines after it
    assert len(head) <= 150 * 3 and len(tail) <= 50 * 3


def test_the_window_start_stays_put_while_the_user_types() -> None:
    """It moves in whole steps of WINDOW_STEP_LINES lines, so a KV cache keeps the prompt."""
    prefix = "".join(f"line_{i} = {i}\n" for i in range(1000))
    starts = {trim_context(prefix + typed, "", 200)[0].split("\n")[0]
              for typed in ("", "x", "x = 1\n", "x = 1\ny", "x = 1\ny = 2\nz")}  # fmt: skip
    assert len(starts) == 1
    number = int(starts.pop().split(" = ")[1])
    assert number % WINDOW_STEP_LINES == 0


def test_trim_context_counts_with_the_models_tokenizer(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prefix = "".join(f"value_{i} = compute({i})\n" for i in range(500)) + "result = "
    head, _ = trim_context(prefix, "", 100, tokenizer)
    assert head.endswith("result = ")
    assert len(tokenizer(head, add_special_tokens=False)["input_ids"]) <= 75


# ---- clean-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prefix", "suffix", "mode", "expected"),
    [
        # no double space: the cursor already stands after one
        (" list(x)", "    return ", "\n", "single", "list(x)"),
        # one line only in single-line mode, trailing whitespace off
        ("1 + 2   \nprint(x)", "x = ", "\n", "single", "1 + 2"),
        # a leading newline mid-line: nothing to show
        ("\nfoo()", "x = 1", "\n", "single", ""),
        # stop where the completion runs into the rest of the line
        ('"hi")', "print(", ")\n", "single", '"hi"'),
        ("a, b):", "def f(", "):\n", "single", "a, b"),
        # an unmatched closer: cut there
        ("a, b))", "x = f(", "\n", "single", "a, b)"),
        # brackets the line opened itself are closed when nothing follows
        ("max(a, min(b", "y = ", "\n", "single", "max(a, min(b))"),
        # runs into the code below the cursor
        ("total = 0\n    for x in xs:\n        total += x\n    return total",
         "def s(xs):\n    ", "\n    return total\n", "multi",
         "total = 0\n    for x in xs:\n        total += x"),
        # leaves the function: cut at the dedent
        ("return 1\n\nprint(f())", "def f():\n    ", "\n", "multi", "return 1"),
        # a blank first line is dropped at an empty indented line
        ("\n    return 2", "def g():\n    ", "\n", "multi", "return 2"),
        # trailing lines repeating the lines below are dropped
        ("a = 1\nb = 2", "", "\nb = 2\nc = 3\n", "multi", "a = 1"),
        # whitespace-only: nothing
        ("   \n  ", "def h():\n    ", "\n", "multi", ""),
    ],
)
def test_fit_to_cursor(text: str, prefix: str, suffix: str, mode: Mode, expected: str) -> None:
    assert fit_to_cursor(text, prefix, suffix, mode).text == expected


def test_fit_to_cursor_reports_truncation_for_early_stopping() -> None:
    assert fit_to_cursor("a\nb", "x = ", "\n", "single").truncated
    assert not fit_to_cursor("abc", "x = ", "\n", "single").truncated


# ---- cache ------------------------------------------------------------------------------------


def test_forward_cache_follows_typing_and_gives_up_on_divergence() -> None:
    documents = Documents()
    cache, other = documents.open("u").cache, documents.open("v").cache
    prefix, suffix = "x" * 5000 + "\nvalue = ", "\nprint(value)\n"
    cache.put(prefix, suffix, "compute(1, 2)", "id1")
    same = cache.lookup(prefix, suffix)
    assert same is not None and same.text == "compute(1, 2)"
    hit = cache.lookup(prefix + "comp", suffix)
    assert hit is not None and (hit.text, hit.item_id, hit.typed) == ("ute(1, 2)", "id1", "comp")
    assert cache.lookup(prefix + "compx", suffix) is None  # typed something else
    assert cache.lookup(prefix + "comp", "#" + suffix) is None  # code after changed
    assert cache.lookup("y" + prefix[1:] + "comp", suffix) is not None  # far above: unseen
    assert cache.lookup(prefix[:-1] + "X" + "comp", suffix) is None  # just above: seen
    assert other.lookup(prefix + "comp", suffix) is None  # other document
    assert cache.lookup(prefix + "compute(1, 2)", suffix) is None  # all typed
    cache.clear()
    assert cache.lookup(prefix, suffix) is None


# ---- logging ----------------------------------------------------------------------------------


def test_redaction_takes_keys_out_of_log_records() -> None:
    redactor = RedactingFilter()
    redactor.secrets.add("sk-known-1234")
    record = logging.LogRecord("x", logging.INFO, __file__, 1,
                               "init %s and %s", ({"apiKey": "sk-unknown-9"}, "sk-known-1234"),
                               None)
    redactor.filter(record)
    message = record.getMessage()
    assert "sk-unknown-9" not in message and "sk-known-1234" not in message
    assert "'apiKey': '***'" in message


# ---- editor environment -----------------------------------------------------------------------


def test_environment_gives_the_analyzers_root_interpreter_and_unsaved_buffers(
    tmp_path: Path,
) -> None:
    from pygls.workspace import Workspace

    from collabcoder.server.lsp.server import CollabLanguageServer

    inner, outer = tmp_path / "pkg", tmp_path
    inner.mkdir()
    server = CollabLanguageServer()
    server.protocol._workspace = Workspace(
        outer.as_uri(), types.TextDocumentSyncKind.Incremental,
        [types.WorkspaceFolder(uri=outer.as_uri(), name="outer"),
         types.WorkspaceFolder(uri=inner.as_uri(), name="inner")],
    )  # fmt: skip
    server.engine.settings = server.engine.settings.model_copy(
        update={"python_path": "/usr/bin/python3", "analyzers": ()})  # no warm-up task
    docs = {name: (inner / name).as_uri() for name in ("main.py", "helper.py", "saved.py",
                                                       "notes.txt")}
    for uri in docs.values():
        server.workspace.put_text_document(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text="x = 1\n"))
        server.documents.open(uri)
    for name in ("main.py", "helper.py", "saved.py", "notes.txt"):
        server.documents.changed(docs[name])
    server.documents.saved(docs["saved.py"])
    env = editor_environment(server, server.workspace.get_text_document(docs["main.py"]))
    assert env.workspace_root == str(inner.resolve())  # the innermost folder holding the file
    assert env.python == "/usr/bin/python3"
    # Only other Python files with unsaved changes; not the document itself.
    assert set(env.overrides) == {str(inner / "helper.py")}
