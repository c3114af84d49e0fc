"""API keys: one normal form, and every form a key can take in text, for scrubbing.

A key pasted from a web page often ends in a newline. Sent as is, httpx rejects the header
(`Illegal header value b'Bearer sk-…\\n'`) and prints the key, escaped, in the error, where a
scrubber that only knows the raw text cannot find it. So a key is normalised once where it
enters (surrounding whitespace stripped; control characters inside refused), and scrubbing
replaces each of its printable forms.
"""

from __future__ import annotations

import json
import unicodedata

MASK = "***"


class ApiKeyError(ValueError):
    """A key that cannot be sent in a header. The message never contains the key."""


def normalize_api_key(raw: str | None) -> str | None:
    """The key without surrounding whitespace; None when empty. Raises ApiKeyError (without the
    key in its message) when white space or an unprintable character is inside it."""
    if raw is None:
        return None
    key = raw.strip()
    if not key:
        return None
    bad = [i for i, ch in enumerate(key) if ch.isspace() or not ch.isprintable()]
    if bad:
        ch = key[bad[0]]
        what = f"U+{ord(ch):04X} ({unicodedata.name(ch, 'control character')})"
        raise ApiKeyError(
            f"the API key has {len(bad)} invalid character(s) inside it, first {what} at "
            f"position {bad[0] + 1}: paste it again as one line with no spaces"
        )
    return key


def key_forms(secret: str) -> list[str]:
    """Every way `secret` can appear in a message: raw, stripped, repr- and JSON-escaped, and
    as the bytes repr httpx prints for header values. Longest first, so replacing them in
    order never leaves a tail of a longer form behind."""
    forms = {secret, secret.strip()}
    for text in list(forms):
        forms.add(repr(text)[1:-1])
        forms.add(json.dumps(text)[1:-1])
        forms.add(repr(text.encode("utf-8", "backslashreplace"))[2:-1])
    return sorted((f for f in forms if f), key=len, reverse=True)


def scrub(text: str, secrets: set[str] | list[str] | tuple[str, ...]) -> str:
    """`text` with every form of every secret replaced by `***`."""
    for secret in secrets:
        if secret and secret.strip():
            for form in key_forms(secret):
                text = text.replace(form, MASK)
    return text
