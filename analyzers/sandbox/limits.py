"""Resource limits for one sandboxed program run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_MB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Limits applied to every process of one run (rlimits are inherited by its children).

    For assert suites one run is the program plus all its tests; for stdin/stdout suites each case
    is one run of the program, so `timeout_s` and `cpu_time_s` apply per case.
    """

    timeout_s: float = 10.0  # wall clock; the whole process group (and uid, when root) is killed
    cpu_time_s: int = 10  # RLIMIT_CPU; capped at ceil(timeout_s) + 1 so a short timeout wins
    memory_mb: int = 1024  # RLIMIT_AS (virtual memory, so it is generous on purpose)
    file_size_mb: int = 16  # RLIMIT_FSIZE: a bigger write fails with OSError (EFBIG)
    # RLIMIT_NPROC counts tasks (threads too) per uid; effective when the sandbox runs as root
    # and gives each concurrent run its own uid (see docs/sandbox.md).
    max_processes: int = 64
    max_output_bytes: int = 1024 * 1024  # per stream; the rest is dropped, printing never blocks

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.cpu_time_s <= 0:
            raise ValueError("timeout_s and cpu_time_s must be positive")
        if min(self.memory_mb, self.file_size_mb, self.max_processes, self.max_output_bytes) <= 0:
            raise ValueError("limits must be positive")

    @property
    def effective_cpu_s(self) -> int:
        return max(1, min(self.cpu_time_s, math.ceil(self.timeout_s) + 1))

    def to_wire(self) -> dict[str, Any]:
        """The plain-JSON form the zygote reads (it is stdlib-only and knows no dataclasses)."""
        return {
            "timeout_s": float(self.timeout_s),
            "cpu_s": self.effective_cpu_s,
            "memory_bytes": self.memory_mb * _MB,
            "fsize_bytes": self.file_size_mb * _MB,
            "nproc": self.max_processes,
            "out_cap": self.max_output_bytes,
        }
