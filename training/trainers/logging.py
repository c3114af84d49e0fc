"""Metric sinks: JSONL and TensorBoard always, Weights & Biases when `logging.report_to` has it.

`metrics.jsonl` is the run's own record (benchmarks and resume read it), so it is always
written; TensorBoard files are local and cheap, so they are too. W&B is opt-in and defaults to
offline mode, which needs neither an account nor a network (`wandb sync` uploads later).

On resume, lines past the checkpoint's step are dropped from the JSONL (a crash can leave a
half line too), and TensorBoard is told to purge events past that step, so curves do not fold
back on themselves.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from collabcoder.analyzers.files import atomic_write
from collabcoder.training.config import LoggingConfig

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """The parseable lines of a run's metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the half line a crash left
    return rows


def _truncate_jsonl(path: Path, last_step: int) -> None:
    if not path.is_file():
        return
    keep = [r for r in read_metrics(path.parent) if int(r.get("step", 0)) <= last_step]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep))


class MetricsLogger:
    """Writes metric dicts to every sink. Only the main process builds one with `enabled`."""

    def __init__(
        self,
        run_dir: Path,
        cfg: LoggingConfig,
        *,
        run_config: dict[str, Any] | None = None,
        resume_step: int | None = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self._jsonl: Any = None
        self._tb: Any = None
        self._wandb: Any = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / METRICS_FILE
        if resume_step is not None:
            _truncate_jsonl(path, resume_step)
        elif path.exists():
            path.unlink()
        self._jsonl = path.open("a", encoding="utf-8")  # always: the run's own record
        if "tensorboard" in cfg.report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = resume_step + 1 if resume_step is not None else None
                self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
            except ImportError:  # tensorboard is in the `train` extra; a bare install goes on
                log.warning("tensorboard is not installed: metrics go to %s only", path)
        if "wandb" in cfg.report_to:
            self._wandb = self._start_wandb(run_dir, cfg, run_config or {}, resume_step)

    @staticmethod
    def _start_wandb(
        run_dir: Path, cfg: LoggingConfig, run_config: dict[str, Any], resume_step: int | None
    ) -> Any:
        try:
            import wandb
        except ImportError as exc:
            raise RuntimeError(
                "logging.report_to has 'wandb' but wandb is not installed: pip install wandb"
            ) from exc
        w = cfg.wandb
        run_id_file = run_dir / "wandb_run_id"
        run_id = run_id_file.read_text().strip() if run_id_file.is_file() else None
        run = wandb.init(
            project=w.project,
            entity=w.entity,
            name=w.name,
            tags=list(w.tags),
            mode=w.mode,
            dir=str(run_dir),
            config=run_config,
            id=run_id,
            resume="allow" if resume_step is not None else None,
        )
        run_id_file.write_text(run.id)
        return run

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled or not metrics:
            return
        clean = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
