"""collabcoder.server.backends: model backends behind one async interface.

Only light modules are imported here: llama.cpp, torch/transformers and vLLM load when a backend
of that kind is built (through `make_backend` or by importing its module).
"""

from collabcoder.server.backends.base import Backend, BackendError, Candidate, CompletionRequest
from collabcoder.server.backends.factory import BACKEND_KINDS, BackendKind, make_backend
from collabcoder.server.backends.fim import (
    FIM_TEMPLATES,
    FimTemplate,
    build_fim_prompt,
    detect_fim_template,
    get_fim_template,
    register_fim_template,
    resolve_fim_template,
)

__all__ = [
    "BACKEND_KINDS",
    "FIM_TEMPLATES",
    "Backend",
    "BackendError",
    "BackendKind",
    "Candidate",
    "CompletionRequest",
    "FimTemplate",
    "build_fim_prompt",
    "detect_fim_template",
    "get_fim_template",
    "make_backend",
    "register_fim_template",
    "resolve_fim_template",
]
