"""Training configs: the shipped YAMLs, overrides, legacy flags, errors, saving, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from collabcoder.training.cli import app
from collabcoder.training.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    load_config,
    parse_value,
    save_config,
)
from collabcoder.training.config.cli_options import expand_multi_value_args

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
MT_HE = CONFIGS / "mt_magrpo_he.yaml"


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


# --- the shipped configs --------------------------------------------------------------------

# name: (trainer, dataset, train split, eval split, epochs, lr, agents, turns)
# fmt: off
PAPER = {
    "grpo_he": ("grpo", "openai/openai_humaneval", "test[33:133]", "test[:32]", 10, 1e-5, 1, 1),
    "grpo_che": ("grpo", "OpenMLRL/CoopHumanEval", "test[:50]", "test[50:66]", 20, 1e-5, 1, 1),
    "magrpo_he": ("magrpo", "openai/openai_humaneval", "test[33:133]", "test[:32]", 10, 2e-5, 2, 1),
    "magrpo_che": ("magrpo", "OpenMLRL/CoopHumanEval", "test[:50]", "test[50:66]", 20, 2e-5, 2, 1),
    "mt_magrpo_he": ("magrpo", "openai/openai_humaneval", "test[33:133]", "test[:32]", 7, 2e-5, 2, 2),
    "mt_magrpo_che": ("magrpo", "OpenMLRL/CoopHumanEval", "test[:50]", "test[50:66]", 10, 2e-5, 2, 2),
}
# fmt: on


@pytest.mark.parametrize("name", sorted(PAPER))
def test_each_shipped_config_loads_with_the_papers_values(name: str) -> None:
    trainer, dataset, train, evaluation, epochs, lr, agents, turns = PAPER[name]
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.trainer_name == trainer
    assert cfg.model.name == "Qwen/Qwen2.5-Coder-3B"
    assert (cfg.dataset.name, cfg.dataset.train_split, cfg.dataset.eval_split) == (
        dataset,
        train,
        evaluation,
    )
    assert cfg.dataset.type == ("coophumaneval" if "che" in name else "humaneval")
    section = cfg.trainer
    assert (section.num_train_epochs, section.learning_rate) == (epochs, lr)
    assert (section.num_agents, section.num_turns) == (agents, turns)
    assert (section.num_generations, section.max_new_tokens) == (4, 256)
    if turns > 1:
        assert section.turn_weights == [1.2, 0.8]
        assert section.early_termination_weight == 2.0
        assert section.expert_model == "deepseek-coder"


def test_the_shipped_training_configs_are_exactly_the_six_paper_runs() -> None:
    # loop_*.yaml configure the feedback loop's evaluation and code_agentic_*.yaml the agentic
    # pipeline (tests/test_agentic_train.py loads those), not MAGRPO-family training runs
    training = [p.stem for p in CONFIGS.glob("*.yaml")
                if not p.stem.startswith(("loop_", "code_agentic_"))]
    assert sorted(training) == sorted(PAPER)


# --- override values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[1.5,0.5]", [1.5, 0.5]),
        ("True", True),
        ("3e-5", 3e-5),  # YAML 1.1 (PyYAML) would keep this a string
        ("1.0e-5", 1e-5),
        ("test[:20]", "test[:20]"),
        ("'bigcode/starcoder2-3b'", "bigcode/starcoder2-3b"),
        ("null", None),
        ("-2", -2),
    ],
)
def test_override_values_are_yaml_literals(raw: str, expected: Any) -> None:
    assert parse_value(raw) == expected


def test_overrides_set_lists_bools_floats_and_split_strings() -> None:
    cfg = load_config(
        MT_HE,
        [
            "dataset.train_split=test[:20]",
            "dataset.eval_split='test[20:30]'",
            "magrpo.turn_gradient_weights=[1.5,0.5]",
            "magrpo.normalize_advantage=True",
            "magrpo.learning_rate=3e-5",
            "magrpo.sandbox_slice=-2",
            "magrpo.external_mode='level_feedback'",
        ],
    )
    assert (cfg.dataset.train_split, cfg.dataset.eval_split) == ("test[:20]", "test[20:30]")
    assert cfg.trainer.turn_gradient_weights == [1.5, 0.5]
    assert cfg.trainer.normalize_advantage is True
    assert cfg.trainer.learning_rate == pytest.approx(3e-5)
    assert cfg.trainer.sandbox_slice == -2
    assert cfg.trainer.external_mode == "level_feedback"


def test_string_keys_keep_the_text_as_typed() -> None:
    cfg = load_config(MT_HE, ["model.name=1.5", "output.base_dir=runs/a #1", "model.type=null"])
    assert cfg.model.name == "1.5"
    assert cfg.output.base_dir == "runs/a #1"
    assert cfg.model.type is None


def test_overrides_deep_merge_and_apply_in_order() -> None:
    cfg = load_config(
        MT_HE,
        [
            "model.model_kwargs.attn_implementation=sdpa",
            "magrpo={num_train_epochs: 3, seed: 7}",
            "magrpo.seed=8",
        ],
    )
    # Merged into, not replaced: the YAML's siblings survive.
    assert cfg.model.model_kwargs == {"trust_remote_code": True, "attn_implementation": "sdpa"}
    assert cfg.trainer.num_turns == 2
    assert (cfg.trainer.num_train_epochs, cfg.trainer.seed) == (3, 8)


@pytest.mark.parametrize(
    "override", ["model_name='bigcode/starcoder2-3b'", "model.name=bigcode/starcoder2-3b"]
)
def test_model_name_and_model_dot_name_both_change_the_model(override: str) -> None:
    assert load_config(MT_HE, [override]).model.name == "bigcode/starcoder2-3b"


def test_interpolation_uses_other_keys() -> None:
    cfg = load_config(MT_HE, ["logging.wandb.name=${model.name}"])
    assert cfg.logging.wandb.name == "Qwen/Qwen2.5-Coder-3B"


# --- legacy flags ---------------------------------------------------------------------------


def test_legacy_flags_set_their_keys() -> None:
    cfg = load_config(
        MT_HE,
        flags={
            "model_name": "Qwen/Qwen2.5-Coder-7B",
            "num_epochs": 10,
            "num_turns": 3,
            "turn_gradient_weights": [1.2, 0.8, 0.5],
            "output_base_dir": "runs/x",
        },
    )
    assert cfg.model.name == "Qwen/Qwen2.5-Coder-7B"
    assert (cfg.magrpo is not None) and cfg.magrpo.num_train_epochs == 10
    assert cfg.trainer.num_turns == 3
    assert cfg.trainer.turn_weights == [1.2, 0.8, 0.5]
    assert cfg.output.base_dir == "runs/x"


def test_num_epochs_goes_to_the_active_trainer_section() -> None:
    cfg = load_config(CONFIGS / "grpo_che.yaml", flags={"num_epochs": 3})
    assert cfg.grpo is not None and cfg.grpo.num_train_epochs == 3
    assert cfg.magrpo is None


def test_precedence_is_yaml_then_overrides_then_flags() -> None:
    assert load_config(MT_HE).trainer.num_train_epochs == 7
    assert load_config(MT_HE, ["magrpo.num_train_epochs=5"]).trainer.num_train_epochs == 5
    cfg = load_config(MT_HE, ["magrpo.num_train_epochs=5"], {"num_epochs": 4})
    assert cfg.trainer.num_train_epochs == 4
    cfg = load_config(MT_HE, ["model.name=a/b"], {"model_name": "c/d", "num_epochs": None})
    assert (cfg.model.name, cfg.trainer.num_train_epochs) == ("c/d", 7)


def test_an_unknown_legacy_flag_is_an_error() -> None:
    assert "unknown legacy flag 'num_epoch'" in config_error(MT_HE, flags={"num_epoch": 3})


# --- errors ---------------------------------------------------------------------------------


def test_unknown_key_in_yaml_names_file_line_and_suggestion(tmp_path: Path) -> None:
    text = MT_HE.read_text().replace("  num_turns: 2", "  num_turn: 2")
    path = write(tmp_path, text, "mt_magrpo_he.yaml")
    line = text.splitlines().index("  num_turn: 2") + 1
    message = config_error(path)
    assert message == (
        f"unknown key 'magrpo.num_turn' in {path} line {line}; did you mean 'magrpo.num_turns'?"
    )


def test_unknown_key_in_override_names_the_override() -> None:
    assert config_error(MT_HE, ["magrpo.num_turn=3"]) == (
        "unknown key 'magrpo.num_turn' in --override magrpo.num_turn=3; "
        "did you mean 'magrpo.num_turns'?"
    )


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("wandb.project=x", "did you mean 'logging.wandb'?"),
        ("magrpo.beta=0.02", "did you mean 'magrpo.kl_beta'?"),
        ("magrpo.lr=1e-5", "did you mean 'magrpo.learning_rate'?"),
        ("model.lora.rank=8", "did you mean 'model.lora.r'?"),
        ("model.lora.alpah=8", "did you mean 'model.lora.alpha'?"),
        ("magrpo.zzz=1", "valid keys under 'magrpo': num_agents, "),
    ],
)
def test_unknown_keys_get_the_nearest_valid_key(override: str, suggestion: str) -> None:
    assert suggestion in config_error(MT_HE, [override])


def test_wrong_type_names_the_key_the_source_and_the_value() -> None:
    message = config_error(MT_HE, ["magrpo.num_turns=two"])
    assert message.startswith(
        "invalid value for 'magrpo.num_turns' in --override magrpo.num_turns=two: "
    )
    assert "valid integer" in message and "'two'" in message


def test_wrong_type_in_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "magrpo:\n  num_agents: 2\n  top_p: lots\n")
    message = config_error(path)
    assert message.startswith(f"invalid value for 'magrpo.top_p' in {path} line 3: ")


def test_several_problems_are_listed_together(tmp_path: Path) -> None:
    path = write(tmp_path, "magrpo:\n  num_turn: 2\n  seed: x\n")
    message = config_error(path)
    assert message.startswith("2 problems in the config:")
    assert "unknown key 'magrpo.num_turn'" in message and "'magrpo.seed'" in message


def test_turn_weights_must_match_num_turns_and_both_sources_are_named() -> None:
    message = config_error(MT_HE, ["magrpo.num_turns=3"])
    assert "'magrpo.turn_gradient_weights' has 2 values but 'magrpo.num_turns' is 3" in message
    assert f"'magrpo.turn_gradient_weights' from {MT_HE} line" in message
    assert "'magrpo.num_turns' from --override magrpo.num_turns=3" in message


def test_exactly_one_trainer_section(tmp_path: Path) -> None:
    both = config_error(MT_HE, ["grpo.num_turns=1"])
    assert "exactly one trainer section" in both and "--override grpo.num_turns=1" in both
    none = config_error(write(tmp_path, "model:\n  name: a/b\n"))
    assert "exactly one trainer section" in none and "found none" in none


def test_grpo_is_single_agent() -> None:
    message = config_error(CONFIGS / "grpo_he.yaml", ["grpo.num_agents=2"])
    assert "grpo trains one agent" in message


def test_dtype_lives_in_model_dtype() -> None:
    message = config_error(MT_HE, ["model.model_kwargs.torch_dtype=bfloat16"])
    assert "'model.dtype'" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("nope.yaml",), "config file not found: nope.yaml"),
        ((MT_HE, ["magrpo.num_turns"]), "expected KEY.PATH=VALUE"),
        (
            (MT_HE, ["magrpo.seed=${missing}"]),
            "cannot resolve 'magrpo.seed' in --override magrpo.seed=${missing}: ",
        ),
    ],
)
def test_bad_inputs_are_config_errors(args: tuple[Any, ...], expected: str) -> None:
    assert expected in config_error(*args)


def test_a_key_set_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "magrpo:\n  num_turns: 2\n  seed: 1\n  num_turns: 3\n")
    assert config_error(path) == (f"{path} line 4: key 'magrpo.num_turns' is already set on line 2")


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "magrpo:\n  num_turns: [2\n")
    assert config_error(path).startswith(f"{path} line 3: invalid YAML")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- saving ---------------------------------------------------------------------------------


def test_saved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(
        MT_HE,
        ["dataset.train_split=test[:20]", "magrpo.learning_rate=3e-5", "model.name=1.5"],
    )
    path = save_config(cfg, tmp_path / "run" / "out")
    assert path == tmp_path / "run" / "out" / "config.yaml"
    assert load_config(path) == cfg
    assert "grpo" not in yaml.safe_load(path.read_text())  # unset trainer sections are left out
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left


def test_save_config_replaces_an_existing_file(tmp_path: Path) -> None:
    save_config(load_config(MT_HE), tmp_path)
    cfg = load_config(CONFIGS / "grpo_he.yaml")
    save_config(cfg, tmp_path)
    assert load_config(tmp_path / "config.yaml") == cfg


def test_config_from_dict_for_programmatic_runs() -> None:
    cfg = config_from_dict({"grpo": {"num_generations": 2}}, ["grpo.max_new_tokens=16"])
    assert isinstance(cfg, TrainConfig)
    assert (cfg.trainer.num_generations, cfg.trainer.max_new_tokens) == (2, 16)


# --- the CLI --------------------------------------------------------------------------------


def test_multi_value_options_are_expanded_in_order() -> None:
    args = ["-c", "x.yaml", "--override", "a=1", "b=2", "--turn_gradient_weights", "1.2", "0.8"]
    assert expand_multi_value_args([*args, "--num_epochs", "4"]) == [
        "-c", "x.yaml",
        "--override", "a=1", "--override", "b=2",
        "--turn_gradient_weights", "1.2", "--turn_gradient_weights", "0.8",
        "--num_epochs", "4",
    ]  # fmt: skip
    assert expand_multi_value_args(["--override=a=1", "b=2", "--", "c=3"]) == [
        "--override=a=1", "--override", "b=2", "--", "c=3",
    ]  # fmt: skip


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["config", *args])


def printed(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert isinstance(data, dict)
    return data


def test_cli_prints_the_merged_config() -> None:
    result = invoke(
        "--config", str(MT_HE),
        "--override", "magrpo.num_turns=3", "magrpo.turn_gradient_weights=[1.2,0.8,0.5]",
        "--num_epochs", "4",
    )  # fmt: skip
    data = printed(result)
    assert data["magrpo"]["num_turns"] == 3
    assert data["magrpo"]["num_train_epochs"] == 4
    assert data["magrpo"]["turn_gradient_weights"] == [1.2, 0.8, 0.5]
    assert data["magrpo"]["joint_mode"] == "aligned"  # defaults are printed too


def test_cli_takes_the_reference_scripts_legacy_flags() -> None:
    result = invoke(
        "--config", str(MT_HE),
        "--model_name", "Qwen/Qwen2.5-Coder-7B",
        "--num_epochs", "10", "--num_turns", "2", "--turn_gradient_weights", "1.5", "0.5",
        "--output_base_dir", "runs/legacy",
        "-o", "dataset.train_split=test[:20]", "--override", "dataset.eval_split=test[20:30]",
    )  # fmt: skip
    data = printed(result)
    assert data["model"]["name"] == "Qwen/Qwen2.5-Coder-7B"
    assert data["magrpo"]["turn_gradient_weights"] == [1.5, 0.5]
    assert data["output"]["base_dir"] == "runs/legacy"
    assert (data["dataset"]["train_split"], data["dataset"]["eval_split"]) == (
        "test[:20]",
        "test[20:30]",
    )


def test_cli_reports_errors_without_traceback_and_exits_2() -> None:
    # The example keeps the YAML's two turn weights for three turns: a clear error.
    result = invoke("--config", str(MT_HE), "--override", "magrpo.num_turns=3", "--num_epochs", "4")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: 'magrpo.turn_gradient_weights' has 2 values")
    assert "Traceback" not in result.output

    result = invoke("--config", str(MT_HE), "--override", "magrpo.num_turn=3")
    assert result.exit_code == 2
    assert "did you mean 'magrpo.num_turns'?" in result.stderr

    result = invoke()
    assert result.exit_code == 2 and "pass --config FILE" in result.stderr


def test_cli_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["config", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--config", "--override", "--model_name", "--num_epochs", "--num_turns"):
        assert option in result.stdout
    assert "--turn_gradient_weights" in result.stdout and "--output_base_dir" in result.stdout


def test_installed_collab_train_command(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "collab-train"
    if not exe.exists():
        pytest.skip("collab-train is not installed in this environment")
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [str(exe), "config", "--config", str(MT_HE), "--num_turns", "1",
         "--turn_gradient_weights", "1.0", "--override", "magrpo.external_mode=plain"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(done.stdout)
    assert data["magrpo"]["num_turns"] == 1
    assert data["magrpo"]["external_mode"] == "plain"
