"""The open documents: one `Document` per URI owns what the server knows about it beyond the
text (pygls' workspace keeps the text, with incremental sync and UTF-16 positions).

A document remembers whether it changed since it was opened or saved (the analyzers then read
the server's copy instead of the disk), the inline request in flight (a newer one supersedes
it), and its forward-typing cache: while the user types the first characters of a shown
suggestion, the rest of it comes back without a model call.

A cache entry remembers where a suggestion was made (the prefix length and its tail, the head
of the suffix) and the text. A later request matches when the new prefix is the old one plus
characters that start the suggestion, and the code after the cursor is unchanged. Comparing
only the tail and head keeps a lookup cheap on a 20,000-line file.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from collabcoder.server.lsp.context import EditorEnvironment, document_path

if TYPE_CHECKING:
    from collabcoder.server.lsp.server import CollabLanguageServer

PREFIX_TAIL = 512
SUFFIX_HEAD = 256
CACHE_ENTRIES = 8  # suggestions remembered per document


@dataclass(frozen=True)
class CacheEntry:
    prefix_len: int
    prefix_tail: str
    suffix_head: str
    text: str
    item_id: str


@dataclass(frozen=True)
class CacheHit:
    text: str  # what is left of the suggestion after what was typed
    item_id: str  # the suggestion's id: accepting the rest counts as accepting it
    typed: str


class ForwardCache:
    """The suggestions last shown in one document."""

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self._entries: deque[CacheEntry] = deque(maxlen=size)

    def put(self, prefix: str, suffix: str, text: str, item_id: str) -> None:
        if text:
            self._entries.append(CacheEntry(
                len(prefix), prefix[-PREFIX_TAIL:], suffix[:SUFFIX_HEAD], text, item_id))

    def lookup(self, prefix: str, suffix: str) -> CacheHit | None:
        for entry in reversed(self._entries):
            typed_len = len(prefix) - entry.prefix_len
            if typed_len < 0 or typed_len >= len(entry.text):
                continue
            start = entry.prefix_len - len(entry.prefix_tail)
            if prefix[start : entry.prefix_len] != entry.prefix_tail:
                continue
            typed = prefix[entry.prefix_len :]
            if not entry.text.startswith(typed):
                continue
            if suffix[: len(entry.suffix_head)] != entry.suffix_head:
                continue
            rest = entry.text[typed_len:]
            if not rest.strip():
                continue
            return CacheHit(rest, entry.item_id, typed)
        return None

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class Pending:
    """The inline request in flight for one document."""

    task: asyncio.Future[object] | None = None
    superseded: bool = False


@dataclass
class Document:
    uri: str
    dirty: bool = False  # changed since opened or saved: analyzers read our copy, not the disk
    pending: Pending | None = None
    cache: ForwardCache = field(default_factory=ForwardCache)

    def begin_request(self) -> Pending:
        """A new inline request: the older one, if still running, is superseded (typing moved
        on) and cancelled."""
        previous, record = self.pending, Pending()
        self.pending = record
        if previous is not None and previous.task is not None and not previous.task.done():
            previous.superseded = True
            previous.task.cancel()
        return record

    def end_request(self, record: Pending) -> None:
        if self.pending is record:
            self.pending = None

    def close(self) -> None:
        if self.pending is not None and self.pending.task is not None:
            self.pending.task.cancel()


class Documents:
    """The documents the client has open, and the analyzer environments already warmed up (a
    cold mypy build would eat the first requests' budgets)."""

    def __init__(self) -> None:
        self._open: dict[str, Document] = {}
        self._warmed: set[tuple[object, ...]] = set()

    def __iter__(self) -> Iterator[Document]:
        return iter(self._open.values())

    def get(self, uri: str) -> Document | None:
        return self._open.get(uri)

    def open(self, uri: str) -> Document:
        document = self._open[uri] = Document(uri)
        return document

    def known(self, uri: str) -> Document:
        """The document, created if a change arrives for one never opened."""
        return self._open.get(uri) or self.open(uri)

    def close(self, uri: str) -> None:
        document = self._open.pop(uri, None)
        if document is not None:
            document.close()

    def clear_caches(self) -> None:
        """New settings: suggestions made under the old ones are not offered again."""
        for document in self._open.values():
            document.cache.clear()

    def first_warm_up(self, env: EditorEnvironment, analyzers: tuple[str, ...]) -> bool:
        """True once per (workspace, interpreter, analyzers)."""
        key = (env.workspace_root, env.python, analyzers)
        if key in self._warmed:
            return False
        self._warmed.add(key)
        return True

    def changed(self, uri: str) -> None:
        self.known(uri).dirty = True

    def saved(self, uri: str) -> None:
        self.known(uri).dirty = False


def editor_environment(ls: CollabLanguageServer, doc: TextDocument) -> EditorEnvironment:
    """Workspace root (the innermost folder holding the file), interpreter, and the unsaved
    buffers of other Python files, for the analyzers."""
    workspace = ls.workspace
    path = Path(doc.path).resolve() if document_path(doc) else None
    root: str | None = None
    best = -1
    for folder in workspace.folders.values():
        folder_path = to_fs_path(folder.uri)
        if folder_path and path is not None:
            candidate = Path(folder_path).resolve()
            if candidate in path.parents and len(candidate.parts) > best:
                root, best = str(candidate), len(candidate.parts)
    if root is None:
        root = workspace.root_path
    overrides: dict[str, str] = {}
    for document in ls.documents:
        if document.uri == doc.uri or not document.dirty:
            continue
        other = workspace.text_documents.get(document.uri)
        if other is not None and other.path and other.path.endswith((".py", ".pyi")):
            overrides[other.path] = other.source
    return EditorEnvironment(root, ls.engine.settings.python_path or None, overrides)


def served(doc: TextDocument, languages: tuple[str, ...]) -> bool:
    """Whether completions are offered in this document's language."""
    language = doc.language_id or ("python" if doc.uri.endswith((".py", ".pyi")) else "")
    return language in languages
