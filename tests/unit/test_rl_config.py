import re
import tomllib
from pathlib import Path

import pytest

from prime_rl.inference.config import InferenceConfig
from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.launch import write_configs
from prime_rl.launcher.processes import ProcessSpec, tail
from prime_rl.launcher.progress import JsonlTail, Progress, format_eta
from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.run_dir import RunDir
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.utils.config import ConfigError, parse_config
from prime_rl.utils.threads import split_threads

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _write(tmp_path, text: str):
    path = tmp_path / "rl.toml"
    path.write_text(text)
    return ["@", str(path)]


def test_shared_fields_pushed_into_every_section(tmp_path):
    argv = _write(
        tmp_path,
        'output_dir = "run"\nmax_steps = 7\nmax_async_level = 2\nseq_len = 512\n'
        '[model]\nname = "tiny"\n[ckpt]\ninterval = 3\n',
    )
    config = parse_config(RLConfig, argv)
    for section in (config.trainer, config.orchestrator):
        assert (section.max_steps, section.max_async_level, section.seq_len) == (7, 2, 512)
        assert section.ckpt.interval == 3 and section.model.name == "tiny"
        assert str(section.output_dir) == "run"
    assert config.inference.model.name == "tiny" and str(config.inference.output_dir) == "run"


def test_value_set_in_one_section_is_shared_and_defaults_are_reconciled():
    config = parse_config(RLConfig, ["--trainer.seq-len", "256"])
    assert config.orchestrator.seq_len == 256
    # nobody sets max_steps: the orchestrator's default (20) wins over the trainer's (None)
    assert config.trainer.max_steps == config.orchestrator.max_steps == 20


def test_contradiction_with_shared_value_names_both_keys(tmp_path):
    argv = _write(tmp_path, "max_steps = 5\n[trainer]\nmax_steps = 6\n")
    with pytest.raises(ConfigError, match=r"`trainer.max_steps` = 6 contradicts the shared `max_steps` = 5"):
        parse_config(RLConfig, argv)


def test_disagreeing_sections_without_shared_value():
    argv = ["--orchestrator.model.name", "a", "--inference.model.name", "b"]
    with pytest.raises(ConfigError, match=r"`orchestrator.model.name` = 'a', `inference.model.name` = 'b' disagree"):
        parse_config(RLConfig, argv)


def test_unknown_key_in_section_names_key_and_file(tmp_path):
    argv = _write(tmp_path, "[orchestrator]\nbatch_sise = 4\n")
    with pytest.raises(ConfigError, match=r"rl.toml: unknown key `orchestrator.batch_sise` \(did you mean"):
        parse_config(RLConfig, argv)


def test_section_validation_runs_before_start():
    argv = ["--orchestrator.batch-size", "6", "--orchestrator.rollouts-per-example", "4"]
    with pytest.raises(ConfigError, match=r"batch_size \(6\) must be a multiple of rollouts_per_example \(4\)"):
        parse_config(RLConfig, argv)


def test_derived_client_url_threads_and_trainer_log_file():
    config = parse_config(RLConfig, ["--inference.server.port", "8123", "--inference.server.host", "0.0.0.0"])
    assert config.orchestrator.client.base_url == ["http://127.0.0.1:8123/v1"]
    assert (config.inference.num_threads, config.trainer.num_threads) == split_threads()
    assert config.trainer.log.file is False
    explicit = parse_config(
        RLConfig, ["--orchestrator.client.base-url", '["http://h:1/v1"]', "--trainer.num-threads", "2"]
    )
    assert explicit.orchestrator.client.base_url == ["http://h:1/v1"] and explicit.trainer.num_threads == 2


def test_default_threads_split():
    assert split_threads(2) == (1, 1)
    assert split_threads(1) == (1, 1)
    assert split_threads(8) == (4, 4)


def test_resolved_configs_round_trip_through_toml(tmp_path):
    argv = [
        "--max-steps", "3", "--trainer.loss.type", "custom", "--trainer.loss.import-path", "m.f",
        "--trainer.loss.kwargs", "{clip_eps = 0.1}", "--orchestrator.advantage.type", "rloo",
    ]  # fmt: skip
    config = parse_config(RLConfig, argv)
    paths = write_configs(config, tmp_path)
    classes = {"inference": InferenceConfig, "orchestrator": OrchestratorConfig, "trainer": RLTrainerConfig}
    for name, cls in classes.items():
        assert tomllib.loads(paths[name].read_text())  # valid TOML
        assert parse_config(cls, ["@", str(paths[name])]).model_dump() == getattr(config, name).model_dump()


def test_none_that_is_not_the_default_cannot_be_written(tmp_path):
    config = parse_config(RLConfig, [])
    config.trainer.optim.max_norm = None
    with pytest.raises(ConfigError, match=r"`trainer` fields set to None .*\['optim.max_norm'\]"):
        write_configs(config, tmp_path)


def test_child_environment_drops_prime_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("PRIME_MAX_STEPS", "9")
    monkeypatch.setenv("PRIME_RL_CACHE", "/cache")
    spec = ProcessSpec("trainer", "prime_rl.trainer.rl.train", tmp_path / "t.toml", tmp_path / "t.log", threads=1)
    env = spec.environment()
    assert "PRIME_MAX_STEPS" not in env and env["PRIME_RL_CACHE"] == "/cache" and env["OMP_NUM_THREADS"] == "1"
    assert spec.command()[-2:] == ["@", str(tmp_path / "t.toml")]


def test_tail_and_jsonl_tail_read_only_complete_lines(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == ["line 97", "line 98", "line 99"]
    assert tail(tmp_path / "missing.log", 3) == []
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 0}\n{"step": 1')
    reader = JsonlTail(metrics)
    assert reader.read() == [{"step": 0}]
    with metrics.open("a") as f:
        f.write("}\n")
    assert reader.read() == [{"step": 1}]


def test_progress_line(tmp_path):
    run = RunDir(tmp_path)
    run.metrics_dir.mkdir()
    run.metrics("orchestrator").write_text('{"step": 1, "reward/mean": 0.25}\n')
    run.metrics("trainer").write_text('{"step": 0, "loss": 0.5}\n')
    progress = Progress(run, max_steps=4)
    assert progress.update()
    line = progress.line()
    assert "trained 1/4" in line and "rollouts step 1" in line and "reward 0.2500" in line and "loss 0.5" in line
    assert format_eta(75) == "1m15s" and format_eta(None) == "?"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/rl.toml")), ids=lambda p: p.parent.name)
def test_example_configs_parse(path):
    config = parse_config(RLConfig, ["@", str(path)])
    assert config.trainer.max_steps == config.orchestrator.max_steps


def test_rl_bad_import_path_exits_2_before_starting(tmp_path, capsys):
    from prime_rl.rl import main

    argv = ["--output-dir", str(tmp_path / "out"), "--trainer.loss.type", "custom",
            "--trainer.loss.import-path", "json.no_such_loss"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "import_path `json.no_such_loss`: module `json` has no attribute `no_such_loss`" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plot_writes_png_from_metrics(tmp_path, capsys):
    from prime_rl.utils.plot import main as plot_main

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "orchestrator.jsonl").write_text(
        "".join(f'{{"step": {i}, "reward/mean": {0.1 * i}, "perf/gen_tokens_per_s": 50}}\n' for i in range(3))
    )
    (metrics / "trainer.jsonl").write_text(
        "".join(f'{{"step": {i}, "loss": 0.5, "mismatch_kl/mean": 0.01, "perf/throughput": 40}}\n' for i in range(3))
    )
    plot_main(["--output-dir", str(tmp_path)])
    assert (metrics / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as exit_info:
        plot_main(["--output-dir", str(tmp_path / "missing")])
    assert exit_info.value.code == 1
    assert re.match(r"plot: error: no metrics under .*missing/metrics", capsys.readouterr().err)


def test_rl_missing_local_model_and_bad_env_args_exit_2(tmp_path, capsys):
    from prime_rl.rl import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--output-dir", str(tmp_path / "out"), "--model.name", str(tmp_path / "no/such/model")])
    assert exit_info.value.code == 2
    assert "no/such/model' is not a directory" in capsys.readouterr().err
    argv = ["--output-dir", str(tmp_path / "out"), "--orchestrator.env", '[{id = "one-word", args = {colour = 1}}]']
    with pytest.raises(SystemExit):
        main(argv)
    assert "colour" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
