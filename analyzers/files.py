"""Atomic file writes: the one way the project writes a file that a reader may open at any time.

A temp file in the same folder, flushed and fsynced, then `os.replace`d over the target: a reader
(or a resumed run after a crash) sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644) -> Path:
    """Write `data` (text is UTF-8) to `path` atomically; creates the parent folder. Returns it."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_with(path, lambda fh: fh.write(payload), mode=mode)


def atomic_write_with(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], *, mode: int = 0o644
) -> Path:
    """Like `atomic_write`, for writers that stream into a binary file (torch.save, json.dump)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes files owner-only; ours are not secrets
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
