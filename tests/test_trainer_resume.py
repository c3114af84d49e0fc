"""`collab-train grpo --resume` on run folders with real damage: a truncated or empty
`trainer_state.pt`, an empty `state.json`, an agent's truncated weights, every checkpoint damaged;
and an output folder that cannot be written, refused before any model is loaded.

The run being resumed is real: three steps planned, two trained (a checkpoint after each), then
stopped, the way a killed run leaves its folder. Each test damages a copy of it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import collabcoder.training.cli.train_cmd  # noqa: F401  (registers grpo and magrpo)
from collabcoder.training.cli import app
from collabcoder.training.cli.train_cmd import build_env
from collabcoder.training.config import load_config
from collabcoder.training.data import load_tasks
from collabcoder.training.trainers import MAGRPOTrainer
from collabcoder.training.trainers import checkpoint as ckpt
from collabcoder.training.trainers.logging import read_metrics
from collabcoder.training.trainers.resume import RunStart, plan_start

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs/grpo_he.yaml")
runner = CliRunner()


def overrides(model: Path, out: Path) -> list[str]:
    return [
        f"model.name={model}", "model.dtype=float32", "model.max_length=384",
        "dataset.train_split=test[:3]", f"output.base_dir={out}",
        "grpo.num_generations=2", "grpo.max_new_tokens=4", "grpo.per_device_train_batch_size=1",
        "grpo.num_train_epochs=1", "grpo.save_steps=1", "grpo.logging_steps=1",
        "grpo.eval_interval=0",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def stopped_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 3 steps stopped after step 2: checkpoints step-1 and step-2, not finished."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    cfg = load_config(CONFIG, overrides(tiny_model_dir, out))
    trainer = MAGRPOTrainer(cfg, build_env(cfg), load_tasks("humaneval", "test[:3]"))
    assert trainer.total_steps == 3
    for step in (1, 2):
        trainer.train_step(step)
    trainer.logger.close()
    return out


@pytest.fixture
def run(stopped_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(stopped_run, copy)
    return copy


def resume(model: Path, out: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["grpo", "-c", CONFIG, "-o", *overrides(model, out), "--resume"])
    return result.exit_code, result.stderr


def step_dir(run: Path, step: int) -> Path:
    return ckpt.checkpoint_dir(run, step)


def truncate(path: Path, keep: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(keep)


def assert_finished_from_step_1(run: Path) -> None:
    """Steps 2 and 3 were trained again after step 1: each logged once, the run finished."""
    assert json.loads((run / "state.json").read_text()) == {
        "step": 3, "total_steps": 3, "finished": True,
    }  # fmt: skip
    assert [r["step"] for r in read_metrics(run) if "reward/mean" in r] == [1, 2, 3]
    assert ckpt.verify(step_dir(run, 2), ("main",)) == []  # the new step 2 is whole


def test_every_checkpoint_lists_its_files_with_sizes_and_hashes(stopped_run: Path) -> None:
    for step in (1, 2):
        folder = step_dir(stopped_run, step)
        listed = json.loads((folder / ckpt.MANIFEST).read_text())
        files = {
            p.relative_to(folder).as_posix(): p
            for p in folder.rglob("*")
            if p.is_file() and p.name != ckpt.MANIFEST
        }
        assert listed["step"] == step
        assert set(listed["files"]) == set(files) and "trainer_state.pt" in files
        for name, entry in listed["files"].items():
            assert entry["size"] == files[name].stat().st_size
            assert entry["sha256"] == ckpt.sha256(files[name])
        assert ckpt.verify(folder, ("main",)) == []


def test_a_checkpoint_damaged_while_being_written_is_never_published(run: Path) -> None:
    stage = ckpt.staging_dir(step_dir(run, 3))
    shutil.copytree(step_dir(run, 2), stage)
    (stage / ckpt.MANIFEST).unlink()
    weights = stage / "main" / "model.safetensors"
    truncate(weights, weights.stat().st_size // 2)  # as a full disk would leave it
    with pytest.raises(ckpt.CheckpointError, match=f"{weights} is not a whole safetensors file"):
        ckpt.seal(stage, 3, ("main",))
    assert not (stage / ckpt.MANIFEST).exists()
    assert ckpt.latest_checkpoint(run) == (2, step_dir(run, 2))


def test_checkpoints_from_before_manifests_are_checked_by_their_formats(run: Path) -> None:
    for step in (1, 2):
        (step_dir(run, step) / ckpt.MANIFEST).unlink()
    assert plan_start(run, True, ("main",)) == RunStart(2, step_dir(run, 2))
    damaged = step_dir(run, 2) / "trainer_state.pt"
    truncate(damaged, 5000)
    start = plan_start(run, True, ("main",))
    assert (start.step, start.checkpoint) == (1, step_dir(run, 1))
    assert f"{damaged} is not a whole pt file" in start.notes[0]


def test_a_truncated_trainer_state_falls_back_to_the_previous_checkpoint(
    tiny_model_dir: Path, run: Path
) -> None:
    damaged = step_dir(run, 2) / "trainer_state.pt"
    size = damaged.stat().st_size
    truncate(damaged, size // 2)
    code, stderr = resume(tiny_model_dir, run)
    assert code == 0, stderr
    assert f"{damaged} is truncated ({size // 2} of {size} bytes)" in stderr
    assert "resuming from step 1" in stderr
    assert "Traceback" not in stderr
    assert_finished_from_step_1(run)
    kept = step_dir(run, 2).with_name("step-0000002.damaged") / "trainer_state.pt"
    assert kept.stat().st_size == size // 2  # moved aside, not deleted


def test_an_empty_trainer_state_falls_back_and_does_not_abort(
    tiny_model_dir: Path, run: Path
) -> None:
    damaged = step_dir(run, 2) / "trainer_state.pt"
    truncate(damaged, 0)
    code, stderr = resume(tiny_model_dir, run)
    assert code == 0, stderr
    assert f"{damaged} is empty" in stderr and "Aborted" not in stderr
    assert "resuming from step 1" in stderr
    assert_finished_from_step_1(run)


def test_a_truncated_agent_weights_file_falls_back(tiny_model_dir: Path, run: Path) -> None:
    damaged = step_dir(run, 2) / "main" / "model.safetensors"
    size = damaged.stat().st_size
    truncate(damaged, size - 100)
    code, stderr = resume(tiny_model_dir, run)
    assert code == 0, stderr
    assert f"{damaged} is truncated ({size - 100} of {size} bytes)" in stderr
    assert "resuming from step 1" in stderr
    assert_finished_from_step_1(run)


def test_an_empty_state_file_is_replaced_by_scanning_the_checkpoints(
    tiny_model_dir: Path, run: Path
) -> None:
    (run / "state.json").write_text("")
    code, stderr = resume(tiny_model_dir, run)
    assert code == 0, stderr
    assert f"{run / 'state.json'} is empty" in stderr and "Traceback" not in stderr
    assert json.loads((run / "state.json").read_text())["finished"] is True
    # Step 2 was whole: only step 3 was trained.
    assert [r["step"] for r in read_metrics(run) if "reward/mean" in r] == [1, 2, 3]


def test_no_good_checkpoint_is_one_error_line_naming_the_files(
    tiny_model_dir: Path, run: Path
) -> None:
    first = step_dir(run, 1) / "main" / "model.safetensors"
    second = step_dir(run, 2) / "trainer_state.pt"
    truncate(first, 10)
    truncate(second, 0)
    code, stderr = resume(tiny_model_dir, run)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert str(first) in lines[0] and str(second) in lines[0]
    assert "no good checkpoint" in lines[0]
    assert first.stat().st_size == 10  # nothing was deleted or rewritten


@pytest.mark.parametrize("where", ["under a file", "is a file"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_loading(
    tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    out = blocker / "run" if where == "under a file" else blocker
    # No model exists at this path: had anything been loaded first, that would be the error.
    missing_model = tmp_path / "no-such-model"
    result = runner.invoke(app, ["grpo", "-c", CONFIG, "-o", *overrides(missing_model, out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{out}" in lines[0] and "not writable" in lines[0] and str(blocker) in lines[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder anyway")
def test_a_read_only_output_folder_is_refused(tmp_path: Path) -> None:  # pragma: no cover
    out = tmp_path / "ro"
    out.mkdir(mode=0o555)
    result = runner.invoke(
        app, ["grpo", "-c", CONFIG, "-o", *overrides(tmp_path / "no-such-model", out)]
    )
    assert result.exit_code == 2
    assert f"{out} is not writable" in result.stderr
