"""W&B logging: the shared `[wandb]` section, the missing-package error, and an offline orchestrator run read back
from the `.wandb` file it wrote (metrics on the right steps, sample tables every `samples_interval` steps)."""

import os
import subprocess
import sys

import pytest
from test_orchestrator_loop import FakeServer, _run

from prime_rl.launcher.config import RLConfig
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.utils.config import ConfigError, parse_config, sections
from prime_rl.utils.metrics import read_metrics
from wandb_files import offline_run_dirs, read_offline_run


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_rl_pushes_one_wandb_section_and_run_id_into_trainer_and_orchestrator(tmp_path):
    toml = tmp_path / "rl.toml"
    toml.write_text('[wandb]\nproject = "p"\ntags = ["a"]\noffline = true\nsamples_interval = 3\n')
    config = parse_config(RLConfig, ["@", str(toml)])
    run_id = config.wandb.id
    assert len(run_id) == 8
    assert config.trainer.wandb.model_dump() == {
        "project": "p", "entity": None, "name": None, "tags": ["a"], "offline": True, "id": run_id,
    }  # fmt: skip
    assert config.orchestrator.wandb.id == run_id
    assert config.orchestrator.wandb.samples_interval == 3
    assert parse_config(RLConfig, ["@", str(toml)]).wandb.id != run_id  # a new run each time unless `id` is set
    assert parse_config(RLConfig, ["@", str(toml), "--wandb.id", "run1"]).trainer.wandb.id == "run1"


def test_rl_without_wandb_section_logs_nowhere():
    config = parse_config(RLConfig, [])
    assert (config.wandb, config.trainer.wandb, config.orchestrator.wandb) == (None, None, None)


def test_wandb_section_contradiction_is_an_error(tmp_path):
    toml = tmp_path / "rl.toml"
    toml.write_text('[wandb]\nproject = "p"\n[trainer.wandb]\nproject = "q"\n')
    with pytest.raises(ConfigError, match=r"`trainer.wandb.project` = 'q' contradicts the shared `wandb.project`"):
        parse_config(RLConfig, ["@", str(toml)])


def test_wandb_without_the_package_is_a_config_error(monkeypatch):
    monkeypatch.setattr(sections, "wandb_installed", lambda: False)
    with pytest.raises(ConfigError) as e:
        parse_config(RLTrainerConfig, ["--wandb.project", "p"])
    assert str(e.value) == (
        'invalid config (command line): `wandb`: the `wandb` package is not installed (pip install -e ".[wandb]")'
    )
    parse_config(RLTrainerConfig, [])  # no [wandb]: the package is not needed


def test_rl_without_the_package_exits_2_before_start(tmp_path):
    toml = tmp_path / "rl.toml"
    toml.write_text(f'output_dir = "{tmp_path / "out"}"\n[wandb]\nproject = "p"\n')
    code = "import sys; sys.modules['wandb'] = None; from prime_rl.rl import main; main(sys.argv[1:])"
    result = subprocess.run(
        [sys.executable, "-c", code, "@", str(toml)], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'rl: error: invalid config ({toml}): `wandb`: the `wandb` package is not installed (pip install -e ".[wandb]")'
    ]
    assert not (tmp_path / "out").exists()


def test_offline_orchestrator_run_holds_every_step_and_sample_tables(tmp_path):
    wandb = {"project": "p", "id": "run12345", "tags": ["t"], "offline": True, "samples_interval": 2,
             "samples_per_step": 3}  # fmt: skip
    with FakeServer() as server:
        _run(tmp_path, server.port, 1, max_steps=4, wandb=wandb)
    (run_dir,) = offline_run_dirs(tmp_path / "wandb" / "orchestrator")
    assert run_dir.name.endswith("-run12345")
    run = read_offline_run(run_dir)
    assert (run["id"], run["project"], run["tags"]) == ("run12345", "p", ["t"])
    rows = [r for r in run["history"] if "orchestrator/reward/mean" in r]
    assert [(r["_step"], r["step"]) for r in rows] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    records = read_metrics(tmp_path / "metrics" / "orchestrator.jsonl")
    for row, record in zip(rows, records, strict=True):
        assert row["orchestrator/reward/mean"] == pytest.approx(record["reward/mean"])
        assert row["orchestrator/off_policy/max"] == record["off_policy/max"]
        assert "orchestrator/batch/digest" not in row  # strings stay in the JSONL
    tables = run["tables"]["orchestrator/samples"]
    assert [step for step, _ in tables] == [0, 2]
    for step, table in tables:
        assert table["columns"] == ["step", "env", "example_id", "prompt", "completion", "reward"]
        assert len(table["data"]) == 3
        assert {row[0] for row in table["data"]} == {step}
        assert all(row[3].startswith("user: ") and row[4].startswith("assistant: ") for row in table["data"])
