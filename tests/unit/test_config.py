"""The config parser: sources and precedence, flags, and one-line errors naming the key, file or field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from prime_rl.utils.config import BaseConfig, BaseSettingsConfig, ConfigError, cli, help_text, parse_config, type_union


class OptimConfig(BaseConfig):
    """Optimizer."""

    lr: float = Field(1e-3, gt=0)
    """Learning rate."""
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999])
    """Adam betas."""


class AdamConfig(BaseConfig):
    type: Literal["default"] = "default"
    """Kind."""
    eps: float = 1e-8
    """Adam epsilon."""


class SGDConfig(BaseConfig):
    type: Literal["sgd"] = "sgd"
    """Kind."""
    momentum: float = 0.0
    """SGD momentum."""


class PlainConfig(BaseConfig):
    type: Literal["plain"] = "plain"
    """Kind."""


class DemoConfig(BaseSettingsConfig):
    """A demo command."""

    name: str = "base"
    """Run name."""
    steps: int = Field(10, ge=1)
    """Number of steps."""
    compile: bool = False
    """Compile the model."""
    optim: OptimConfig = OptimConfig()
    """Optimizer settings."""
    algo: type_union(AdamConfig, SGDConfig, PlainConfig) = AdamConfig()
    """Swappable part."""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_env_toml_cli_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIME_NAME", "env")
    monkeypatch.setenv("PRIME_STEPS", "3")
    monkeypatch.setenv("PRIME_OPTIM__LR", "0.5")
    toml = write(tmp_path / "a.toml", 'name = "toml"\n[optim]\nbetas = [0.1, 0.2]\n')
    config = parse_config(DemoConfig, ["@", str(toml), "--optim.betas", "[0.3, 0.4]"])
    assert config.name == "toml"  # TOML beats env
    assert config.steps == 3  # env beats default
    assert config.optim.lr == 0.5  # env nested with `__`, merged with the TOML table
    assert config.optim.betas == [0.3, 0.4]  # CLI beats TOML
    assert config.compile is False
    assert parse_config(DemoConfig, []).name == "env"


def test_later_toml_wins_and_tables_merge(tmp_path):
    a = write(tmp_path / "a.toml", 'name = "a"\nsteps = 5\n[optim]\nlr = 0.1\n')
    b = write(tmp_path / "b.toml", 'name = "b"\n[optim]\nbetas = [0.5, 0.5]\n')
    config = parse_config(DemoConfig, ["@", str(a), "@", str(b)])
    assert (config.name, config.steps, config.optim.lr, config.optim.betas) == ("b", 5, 0.1, [0.5, 0.5])
    config = parse_config(DemoConfig, [f"@{b}", f"@{a}"])
    assert config.name == "a"


def test_type_change_replaces_the_table(tmp_path):
    a = write(tmp_path / "a.toml", "[algo]\neps = 0.1\n")
    config = parse_config(DemoConfig, ["@", str(a), "--algo.type", "sgd", "--algo.momentum", "0.9"])
    assert config.algo == SGDConfig(momentum=0.9)
    assert parse_config(DemoConfig, ["@", str(a)]).algo == AdamConfig(eps=0.1)  # missing type means default


def test_flags_and_kebab_case():
    assert parse_config(DemoConfig, ["--compile"]).compile is True
    assert parse_config(DemoConfig, ["--compile", "--no-compile"]).compile is False
    assert parse_config(DemoConfig, ["--optim.lr=0.25", "--steps", "7"]).optim.lr == 0.25
    config = parse_config(DemoConfig, ["--optim.betas", "[1, 2]", "--name", "x-y"])
    assert (config.optim.betas, config.name) == ([1.0, 2.0], "x-y")


def test_unknown_key_names_file_and_closest_key(tmp_path):
    bad = write(tmp_path / "bad.toml", "[optim]\nlrr = 0.1\n")
    with pytest.raises(ConfigError) as e:
        parse_config(DemoConfig, ["@", str(bad)])
    assert str(e.value) == f"{bad}: unknown key `optim.lrr` (did you mean `optim.lr`?)"
    with pytest.raises(ConfigError, match=r"^command line: unknown key `stepz` \(did you mean `steps`\?\)$"):
        parse_config(DemoConfig, ["--stepz", "3"])


def test_unknown_key_of_another_variant_names_its_type():
    with pytest.raises(ConfigError) as e:
        parse_config(DemoConfig, ["--algo.momentum", "0.9"])
    assert str(e.value) == "command line: unknown key `algo.momentum` for type 'default' (it belongs to type 'sgd')"


def test_wrong_type_names_dotted_path(tmp_path):
    bad = write(tmp_path / "bad.toml", '[optim]\nlr = "fast"\n')
    with pytest.raises(ConfigError) as e:
        parse_config(DemoConfig, ["@", str(bad)])
    msg = str(e.value)
    number = "Input should be a valid number, unable to parse string as a number"
    assert msg == f"invalid config ({bad}): `optim.lr`: {number} (got 'fast')"
    assert "\n" not in msg
    with pytest.raises(ConfigError, match=r"`algo.momentum`: Input should be a valid number"):
        parse_config(DemoConfig, ["--algo.type", "sgd", "--algo.momentum", "x"])
    with pytest.raises(ConfigError, match=r"`steps`: Input should be greater than or equal to 1 \(got '0'\)"):
        parse_config(DemoConfig, ["--steps", "0"])


def test_unknown_type_lists_the_choices():
    with pytest.raises(ConfigError) as e:
        parse_config(DemoConfig, ["--algo.type", "adamw"])
    expected = "`algo.type`: unknown type 'adamw' (expected one of: 'default', 'sgd', 'plain')"
    assert str(e.value) == f"invalid config (command line): {expected}"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope\.toml$"):
        parse_config(DemoConfig, ["@", str(tmp_path / "nope.toml")])
    with pytest.raises(ConfigError, match="must be followed by a TOML file"):
        parse_config(DemoConfig, ["@"])


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(DemoConfig, "demo", ["--stepz", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "demo: error: command line: unknown key `stepz` (did you mean `steps`?)\n"


def test_help_lists_every_field_with_its_docstring(capsys):
    text = help_text(DemoConfig, "demo")
    assert text.startswith("usage: demo [@ config.toml ...] [--key value ...]\n\nA demo command.")
    for line in (
        "--name  Run name. [default: 'base']",
        "--steps  Number of steps. [default: 10]",
        "--compile  Compile the model. [default: False]",
        "--optim.lr  Learning rate. [default: 0.001]",
        "--algo  [table (type: default | sgd | plain)] Swappable part.",
        "with --algo.type = 'sgd':",
        "--algo.momentum  SGD momentum. [default: 0.0]",
        "with --algo.type = 'plain': (no options)",
    ):
        assert line in text
    with pytest.raises(SystemExit) as e:
        cli(DemoConfig, "demo", ["--help"])
    assert e.value.code == 0
    assert "--optim.betas  Adam betas." in capsys.readouterr().out


def test_type_union_with_a_named_default_checks_keys_of_that_variant():
    from prime_rl.trainer.rl.config import RLTrainerConfig

    config = parse_config(RLTrainerConfig, ["--optim.lr", "1e-5", "--scheduler.warmup-steps", "3"])
    assert (config.optim.type, config.optim.lr, config.scheduler.type) == ("adamw", 1e-5, "constant")
    with pytest.raises(
        ConfigError, match=r"unknown key `optim.momentum` for type 'adamw' \(it belongs to type 'sgd'\)"
    ):
        parse_config(RLTrainerConfig, ["--optim.momentum", "0.5"])
    assert parse_config(RLTrainerConfig, ["--optim.type", "sgd", "--optim.momentum", "0.5"]).optim.momentum == 0.5


def test_help_into_a_closed_pipe_exits_cleanly():
    import subprocess
    import sys

    code = (
        "from prime_rl.trainer.rl.config import RLTrainerConfig; from prime_rl.utils.config import cli; "
        "cli(RLTrainerConfig, 't')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `--help | head -0`
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in proc.stderr.read()
