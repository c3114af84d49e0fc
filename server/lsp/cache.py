"""Forward-typing cache: while the user types the first characters of a shown suggestion, the
rest of it comes back without a model call.

An entry remembers where a suggestion was made (the prefix length and its tail, the head of the
suffix) and the text. A later request in the same document matches when the new prefix is the
old one plus characters that start the suggestion, and the code after the cursor is unchanged.
Comparing only the tail and head keeps a lookup cheap on a 20,000-line file.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

PREFIX_TAIL = 512
SUFFIX_HEAD = 256


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
    def __init__(self, per_document: int = 8, documents: int = 64) -> None:
        self.per_document = per_document
        self.documents = documents
        self._entries: OrderedDict[str, deque[CacheEntry]] = OrderedDict()

    def put(self, uri: str, prefix: str, suffix: str, text: str, item_id: str) -> None:
        if not text:
            return
        entries = self._entries.get(uri)
        if entries is None:
            entries = self._entries[uri] = deque(maxlen=self.per_document)
            while len(self._entries) > self.documents:
                self._entries.popitem(last=False)
        self._entries.move_to_end(uri)
        entries.append(
            CacheEntry(
                len(prefix), prefix[-PREFIX_TAIL:], suffix[:SUFFIX_HEAD], text, item_id
            )
        )

    def lookup(self, uri: str, prefix: str, suffix: str) -> CacheHit | None:
        for entry in reversed(self._entries.get(uri, ())):
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

    def clear(self, uri: str | None = None) -> None:
        if uri is None:
            self._entries.clear()
        else:
            self._entries.pop(uri, None)
