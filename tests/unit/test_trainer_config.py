"""RLTrainerConfig parsing (fields are a contract with the `rl` launcher) and `trainer --help` without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prime_rl.trainer.config import AdamWConfig, CosineSchedulerConfig, SGDConfig
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.utils.config import ConfigError, parse_config


def test_defaults_and_cli_overrides():
    config = parse_config(RLTrainerConfig, ["--data.fake", "--optim.lr", "3e-6", "--ckpt.resume-step", "-1"])
    assert config.data.fake is True
    assert isinstance(config.optim, AdamWConfig) and config.optim.lr == 3e-6
    assert config.ckpt.resume_step == -1
    assert (config.max_async_level, config.seq_len, str(config.output_dir)) == (1, 2048, "outputs")
    assert config.model.name == "smollm2-135m-instruct"


def test_toml_union_types(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text('max_steps = 10\n[optim]\ntype = "sgd"\nlr = 0.1\n[scheduler]\ntype = "cosine"\nwarmup_steps = 2\n')
    config = parse_config(RLTrainerConfig, ["@", str(toml)])
    assert isinstance(config.optim, SGDConfig) and config.optim.lr == 0.1
    assert isinstance(config.scheduler, CosineSchedulerConfig) and config.scheduler.warmup_steps == 2


def test_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"`optim.learning_rate`"):
        parse_config(RLTrainerConfig, ["--optim.learning-rate", "1"])
    with pytest.raises(ConfigError, match=r"warmup_steps \(5\) exceeds max_steps \(2\)"):
        parse_config(RLTrainerConfig, ["--max-steps", "2", "--scheduler.warmup-steps", "5"])


def test_help_answers_without_importing_torch():
    code = (
        "import sys\n"
        "from prime_rl.trainer.rl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--ckpt.resume-step" in out and "--data.fake" in out and "--loss" in out
    assert out.strip().endswith("TORCH False")
