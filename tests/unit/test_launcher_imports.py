"""`rl` keeps torch and transformers out of its own process: its checks run in a forked child (`launcher/fork.py`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.fork import call_in_fork
from prime_rl.utils.config import ConfigError, parse_config

CHECK_IN_CHILD = """
import sys
from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.fork import call_in_fork
from prime_rl.utils.config import parse_config

config = parse_config(RLConfig, ["--model.name", sys.argv[1], "--orchestrator.env", '[{id = "one-word"}]'])
call_in_fork("prime_rl.launcher.checks:run_checks", config)
print(sorted(m for m in ("torch", "transformers", "numpy") if m in sys.modules))
"""


def test_rl_checks_the_run_without_importing_torch_or_transformers(tiny_model_dir):
    out = subprocess.run(
        [sys.executable, "-c", CHECK_IN_CHILD, str(tiny_model_dir)], capture_output=True, text=True, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_config_error_in_the_child_is_raised_in_the_parent_with_its_message():
    config = parse_config(RLConfig, ["--model.name", "/nonexistent/model"])
    with pytest.raises(ConfigError) as error:
        call_in_fork("prime_rl.launcher.checks:check_model", config)
    assert (
        str(error.value)
        == "command line: `model.name` = '/nonexistent/model' is not a directory (hub ids look like `org/name`)"
    )


def test_a_child_that_dies_is_an_error_naming_the_target():
    with pytest.raises(RuntimeError, match=r"^os:_exit died in its child process \(exit code 3\)$"):
        call_in_fork("os:_exit", 3)
