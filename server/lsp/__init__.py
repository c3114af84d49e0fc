"""The Collab Coder language server (pygls): inline completions checked by the analyzers, the
feedback loop on demand, status and stats for the VS Code extension. See docs/server.md."""

from collabcoder.server.lsp.handlers import create_server
from collabcoder.server.lsp.server import CollabLanguageServer
from collabcoder.server.lsp.settings import Settings, parse_settings

__all__ = ["CollabLanguageServer", "Settings", "create_server", "parse_settings"]
