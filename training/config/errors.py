"""The one error type every config problem raises."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file, override or legacy flag is wrong; the message says where and how to fix it.

    A ValueError subclass so callers that only know "bad input" still catch it; the CLI prints
    the message alone (no traceback) and exits with status 2.
    """
