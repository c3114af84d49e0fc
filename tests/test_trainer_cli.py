"""`collab-train grpo|magrpo` from the paper configs, overrides and legacy flags; a run killed
with SIGKILL after its first checkpoint resumes to the same final step."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import collabcoder.training.cli.train_cmd  # noqa: F401  (registers grpo and magrpo)
from collabcoder.server.agents.manifest import AgentsManifest
from collabcoder.training.cli import app
from collabcoder.training.trainers.logging import read_metrics

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def tiny_overrides(model: Path, out: Path, section: str) -> list[str]:
    return [
        f"model.name={model}", "model.dtype=float32", "model.max_length=384",
        "dataset.train_split=test[:2]",
        "dataset.eval_split=test[2:3]", f"output.base_dir={out}",
        f"{section}.num_generations=2", f"{section}.max_new_tokens=4",
        f"{section}.per_device_train_batch_size=2", f"{section}.num_train_epochs=1",
    ]  # fmt: skip


def test_grpo_command_with_a_paper_config(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "grpo"
    args = ["grpo", "--config", str(ROOT / "configs/grpo_he.yaml"), "--override",
            *tiny_overrides(tiny_model_dir, out, "grpo")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "done: step 1/1" in result.output
    assert AgentsManifest.load(out).num_agents == 1


def test_save_total_limit_keeps_the_newest_checkpoints(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    args = ["grpo", "-c", str(ROOT / "configs/grpo_he.yaml"), "-o",
            *tiny_overrides(tiny_model_dir, out, "grpo"), "dataset.train_split=test[:4]",
            "grpo.per_device_train_batch_size=1", "grpo.save_steps=1",
            "grpo.save_total_limit=2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["step-0000003", "step-0000004"]
    assert AgentsManifest.load(out).num_agents == 1


def test_multi_turn_magrpo_with_overrides_and_legacy_flags(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mt"
    args = [
        "magrpo", "--config", str(ROOT / "configs/mt_magrpo_he.yaml"),
        "--override", *tiny_overrides(tiny_model_dir, out, "magrpo"),
        "magrpo.num_turns=2", "magrpo.external_mode=level_feedback", "magrpo.sandbox_slice=-2",
        "--num_epochs", "1", "--turn_gradient_weights", "1.5", "0.5",
        "--model_name", str(tiny_model_dir), "--output_base_dir", str(out),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = (out / "config.yaml").read_text()
    assert "turn_gradient_weights:\n  - 1.5\n  - 0.5" in saved or "[1.5, 0.5]" in saved
    manifest = AgentsManifest.load(out)
    assert manifest.turn_protocol.external_mode == "level_feedback"
    assert manifest.turn_protocol.sandbox_slice == -2
    assert [a.role for a in manifest.agents] == ["aux", "main"]


def test_wrong_command_for_the_config_and_a_missing_expert_key(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(app, ["grpo", "-c", str(ROOT / "configs/magrpo_he.yaml")])
    assert result.exit_code == 2 and "collab-train magrpo" in result.output
    for var in ("DEEPSEEK_API_KEY", "COLLABCODER_EXPERT_BASE_URL", "COLLABCODER_EXPERT_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    args = ["magrpo", "-c", str(ROOT / "configs/mt_magrpo_he.yaml"), "-o",
            *tiny_overrides(tiny_model_dir, tmp_path / "x", "magrpo")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "DEEPSEEK_API_KEY" in result.output


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    base = [
        sys.executable, "-m", "collabcoder.training.cli.train_cmd", "grpo",
        "-c", str(ROOT / "configs/grpo_he.yaml"), "-o",
        *tiny_overrides(tiny_model_dir, out, "grpo"),
        "dataset.train_split=test[:4]", "grpo.per_device_train_batch_size=1",
        "grpo.num_train_epochs=2", "grpo.save_steps=1", "grpo.max_new_tokens=16",
        "grpo.logging_steps=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "checkpoints" / "step-0000001"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert first.exists(), stderr.decode()[-2000:]
    state = json.loads((out / "state.json").read_text())
    assert not state["finished"] and state["step"] < 8  # killed mid-way
    killed_at = state["step"]

    done = subprocess.run([*base, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state == {"step": 8, "total_steps": 8, "finished": True}
    steps = [r["step"] for r in read_metrics(out) if "reward/mean" in r]
    assert steps == list(range(1, 9))  # no step lost, none logged twice
    assert killed_at >= 1
    AgentsManifest.load(out)


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM needs a CUDA GPU and is not installable on these CPU machines",
)
def test_vllm_rollouts(tiny_model_dir: Path, tmp_path: Path) -> None:  # pragma: no cover
    out = tmp_path / "vllm"
    args = ["grpo", "-c", str(ROOT / "configs/grpo_he.yaml"), "-o",
            *tiny_overrides(tiny_model_dir, out, "grpo"), "generation.backend=vllm"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
