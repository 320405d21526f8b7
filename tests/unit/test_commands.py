"""Every console script: `--help` and config errors answer before torch is imported, through one `run_cli` with one
exit-code contract; and the config sections every command shares are the same classes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import get_args

import pytest

from prime_rl.eval.config import EvalConfig
from prime_rl.inference.config import InferenceConfig
from prime_rl.launcher.config import RLConfig, RLModelConfig
from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.trainer.config import TrainerModelConfig
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.trainer.sft.config import SFTConfig
from prime_rl.utils.config import BaseSettingsConfig, ConfigError, RunError, run_cli
from prime_rl.utils.config.sections import (
    CkptConfig,
    ClientConfig,
    EnvConfig,
    LogConfig,
    ModelConfig,
    SamplingConfig,
)

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]


def test_every_command_is_registered():
    assert sorted(SCRIPTS) == ["eval", "inference", "orchestrator", "plot", "rl", "sft", "trainer"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_and_config_errors_answer_without_torch(name):
    module, func = SCRIPTS[name].split(":")
    code = (
        "import sys\n"
        f"from {module} import {func} as main\n"
        "for argv in (['--help'], ['--no-such-key', '1']):\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        print('EXIT', e.code)\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out = result.stdout
    assert out.startswith(f"usage: {name} [@ config.toml ...] [--key value ...]"), out[:200]
    assert "--output-dir" in out and "EXIT 0\n" in out
    assert out.strip().endswith("EXIT 2\nTORCH False"), out[-200:]
    assert result.stderr == f"{name}: error: command line: unknown key `no_such_key`\n"


def _section(cls: type, dotted: str) -> type:
    for key in dotted.split("."):
        cls = cls.model_fields[key].annotation
    return cls


def test_shared_sections_are_the_same_classes():
    trainers = (RLTrainerConfig, SFTConfig, _section(RLConfig, "trainer"))
    policies = (OrchestratorConfig, EvalConfig, RLConfig, _section(RLConfig, "orchestrator"))
    for cls in (*trainers, *policies, InferenceConfig):
        assert issubclass(_section(cls, "model"), ModelConfig), cls
        assert cls is RLConfig or _section(cls, "log") is LogConfig, cls  # `rl` logs to logs/rl.log
    for cls in trainers:
        assert _section(cls, "model") is TrainerModelConfig and _section(cls, "ckpt") is CkptConfig
    for cls in policies:  # `rl`'s shared `[model]` adds `lora`, which it pushes into the trainer
        assert _section(cls, "model") is (RLModelConfig if cls is RLConfig else ModelConfig)
    for cls in (OrchestratorConfig, EvalConfig, _section(OrchestratorConfig, "eval").__args__[0]):
        assert _section(cls, "sampling") is SamplingConfig
    for cls in (OrchestratorConfig, EvalConfig):
        assert _section(cls, "client") is ClientConfig
    assert (_section(OrchestratorConfig, "ckpt"), _section(RLConfig, "ckpt")) == (CkptConfig, CkptConfig)
    assert _section(EvalConfig, "inference") is InferenceConfig
    for cls in (OrchestratorConfig, EvalConfig):
        env = get_args(cls.model_fields["env"].annotation)[0]
        assert issubclass(env, EnvConfig) and "name" not in env.__annotations__
    # A field of a shared section is declared once: the subclasses only add their own.
    assert "name" not in TrainerModelConfig.__annotations__ and "dtype" not in TrainerModelConfig.__annotations__


def test_one_spelling_per_key():
    assert parse_log(RLTrainerConfig, "WARNING") == parse_log(InferenceConfig, "warning") == "warning"
    assert RLTrainerConfig().log.file is True and SFTConfig.model_fields["log"].default.file is True
    assert (OrchestratorConfig().log.file, InferenceConfig().log.file, EvalConfig().log.file) == (False,) * 3
    eval_help = subprocess.run(
        [sys.executable, "-m", "prime_rl.eval.cli", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    assert "--log.level" in eval_help and "--inference.server.port" in eval_help and "--log-level" not in eval_help


def parse_log(cls: type[BaseSettingsConfig], level: str) -> str:
    from prime_rl.utils.config import parse_config

    return parse_config(cls, ["--log.level", level]).log.level


class _Demo(BaseSettingsConfig):
    """Demo."""

    steps: int = 1
    """Steps."""


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (ConfigError("`data.path`: not found"), 2, "demo: error: `data.path`: not found"),
        (RunError("http://x/v1 unreachable"), 1, "demo: error: http://x/v1 unreachable"),
        (KeyboardInterrupt(), 130, None),
        (
            RuntimeError("CUDA error: device-side assert"),
            1,
            "demo: error: RuntimeError: CUDA error: device-side assert",
        ),
    ],
    ids=["config", "run", "interrupt", "bug"],
)
def test_run_cli_exit_codes_and_one_line(capsys, raised, code, line):
    def run(config: _Demo) -> None:
        assert config.steps == 3
        raise raised

    with pytest.raises(SystemExit) as exit_info:
        run_cli("demo", _Demo, run, ["--steps", "3"])
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    if line is None:
        assert err == ""
    elif isinstance(raised, RuntimeError):  # a bug keeps its traceback, then the one line
        assert "Traceback" in err and err.splitlines()[-1] == line
    else:
        assert err == line + "\n"


def test_run_cli_imports_a_target_by_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("demo", _Demo, "json:no_such_function", [])
    assert exit_info.value.code == 1 and "AttributeError" in capsys.readouterr().err
