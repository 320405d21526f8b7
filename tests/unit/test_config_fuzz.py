"""Malformed `rl` configs: each gives ONE line on stderr naming the key or file, exits 2, and leaves the output
directory exactly as it was (an earlier run's files included: a failed start never cleans or writes)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prime_rl.rl import main

LOSS = '[trainer.loss]\ntype = "custom"\n'
ADV = '[orchestrator.advantage]\ntype = "custom"\n'
ENV = "[[orchestrator.env]]\n"
EVAL_ENV = "[orchestrator.eval]\ninterval = 2\n[[orchestrator.eval.env]]\n"

# (case id, TOML text or None, extra CLI arguments, substrings the one-line error must contain)
CASES = [
    # unknown keys, at every depth
    ("unknown-top", "foo = 1\n", [], ["`foo`"]),
    ("unknown-trainer", "[trainer]\nfoo = 1\n", [], ["trainer.foo"]),
    ("unknown-optim", "[trainer.optim]\nlrr = 1e-3\n", [], ["trainer.optim.lrr"]),
    ("unknown-sampling", "[orchestrator.sampling]\ntemp = 1.0\n", [], ["orchestrator.sampling.temp"]),
    ("unknown-server", '[inference.server]\nhostname = "x"\n', [], ["inference.server.hostname"]),
    ("unknown-loss", "[trainer.loss]\nclip = 0.2\n", [], ["trainer.loss", "clip"]),
    ("unknown-advantage", "[orchestrator.advantage]\nfoo = 1\n", [], ["orchestrator.advantage", "foo"]),
    ("unknown-env", f'{ENV}id = "reverse-text"\nwieght = 2\n', [], ["wieght"]),
    ("unknown-eval", "[orchestrator.eval]\nintervall = 3\n", [], ["orchestrator.eval.intervall"]),
    ("removed-retries", "[orchestrator.client]\nretries = 3\n", [], ["orchestrator.client.retries"]),
    ("unknown-shared-ckpt", "[ckpt]\nfoo = 1\n", [], ["ckpt.foo"]),
    ("unknown-shared-model", '[model]\nrevision = "x"\n', [], ["model.revision"]),
    ("unknown-trainer-ckpt", "[trainer.ckpt]\nevery = 2\n", [], ["trainer.ckpt.every"]),
    ("unknown-eval-sampling", "[orchestrator.eval.sampling]\nfoo = 1\n", [], ["orchestrator.eval.sampling.foo"]),
    ("unknown-cli-flag", None, ["--no-such-flag", "1"], ["no_such_flag"]),
    ("unknown-cli-nested", None, ["--trainer.optim.beta", "1"], ["trainer.optim.beta"]),
    # wrong types
    ("type-max-steps", 'max_steps = "ten"\n', [], ["max_steps"]),
    ("type-lr", '[trainer.optim]\nlr = "fast"\n', [], ["trainer.optim.lr"]),
    ("type-batch-size", "[orchestrator]\nbatch_size = 1.5\n", [], ["orchestrator.batch_size"]),
    ("type-stop", "[orchestrator.sampling]\nstop = 5\n", [], ["orchestrator.sampling.stop"]),
    ("type-base-url", "[orchestrator.client]\nbase_url = 3\n", [], ["orchestrator.client.base_url"]),
    ("type-seq-len", "seq_len = [1]\n", [], ["seq_len"]),
    ("type-loss-type", "[trainer.loss]\ntype = 3\n", [], ["trainer.loss"]),
    ("type-port", '[inference.server]\nport = "http"\n', [], ["inference.server.port"]),
    ("type-clean", 'clean = "maybe"\n', [], ["clean"]),
    ("type-env", '[orchestrator]\nenv = "reverse-text"\n', [], ["orchestrator.env"]),
    ("type-cli-lr", None, ["--trainer.optim.lr", "x"], ["trainer.optim.lr"]),
    ("type-eval", "[orchestrator]\neval = 3\n", [], ["orchestrator.eval"]),
    # strict types: no float or bool for an int, no number for a bool
    ("strict-float-max-steps", "max_steps = 1e3\n", [], ["rl.toml): `max_steps`", "not a float"]),
    ("strict-float-batch", "[orchestrator]\nbatch_size = 8.0\n", [], ["`orchestrator.batch_size`", "not a float"]),
    ("strict-bool-seed", "[trainer]\nseed = true\n", [], ["`trainer.seed`", "not a bool"]),
    ("strict-bool-lr", "[trainer.optim]\nlr = true\n", [], ["`trainer.optim.lr`", "not a bool"]),
    ("strict-int-clean", "clean = 1\n", [], ["`clean`", "valid boolean"]),
    ("strict-float-cli", None, ["--max-steps", "1e3"], ["invalid config (command line): `max_steps`"]),
    (
        "strict-float-steps-list",
        '[orchestrator.sampling]\nstop = ["x"]\nmax_tokens = 2.5\n',
        [],
        ["orchestrator.sampling.max_tokens"],
    ),
    # a value given only on the command line is reported as such, not as the TOML file's
    (
        "cli-only-lr",
        "seq_len = 64\n",
        ["--trainer.optim.lr", "x"],
        ["invalid config (command line): `trainer.optim.lr`"],
    ),
    ("cli-only-batch", "seq_len = 64\n", ["--orchestrator.batch-size", "0"], ["(command line)", "batch_size"]),
    ("cli-only-log-level", "seq_len = 64\n", ["--trainer.log.level", "loud"], ["(command line)", "trainer.log.level"]),
    # out-of-range values and contradictions inside one section
    ("range-max-steps", "max_steps = 0\n", [], ["max_steps"]),
    ("range-async", "max_async_level = -1\n", [], ["max_async_level"]),
    ("range-seq-len", "seq_len = 0\n", [], ["seq_len"]),
    ("range-batch-size", "[orchestrator]\nbatch_size = 0\n", [], ["orchestrator.batch_size"]),
    ("range-temperature", "[orchestrator.sampling]\ntemperature = 0\n", [], ["orchestrator.sampling.temperature"]),
    ("range-top-p", "[orchestrator.sampling]\ntop_p = 1.5\n", [], ["orchestrator.sampling.top_p"]),
    ("range-min-p", "[orchestrator.sampling]\nmin_p = 2\n", [], ["orchestrator.sampling.min_p"]),
    ("range-top-k", "[orchestrator.sampling]\ntop_k = -2\n", [], ["orchestrator.sampling.top_k"]),
    ("range-min-tokens", "[orchestrator.sampling]\nmin_tokens = 10\nmax_tokens = 5\n", [], ["min_tokens (10)"]),
    ("range-mask-bounds", "[trainer.loss]\ntoken_mask_low = 9.0\n", [], ["token_mask_low (9.0)"]),
    ("range-group-multiple", "[orchestrator]\nbatch_size = 6\nrollouts_per_example = 4\n", [], ["batch_size (6)"]),
    ("range-ckpt-interval", "[ckpt]\ninterval = 0\n", [], ["ckpt.interval"]),
    ("range-resume-step", "[ckpt]\nresume_step = -2\n", [], ["ckpt.resume_step"]),
    ("range-eval-interval", "[orchestrator.eval]\ninterval = 0\n", [], ["orchestrator.eval.interval"]),
    ("range-retry-timeout", "[orchestrator.client]\nretry_timeout = -1\n", [], ["orchestrator.client.retry_timeout"]),
    ("range-health-timeout", "health_timeout = 0\n", [], ["health_timeout"]),
    ("range-env-weight", f'{ENV}id = "reverse-text"\nweight = 0\n', [], ["weight"]),
    ("range-lr", "[trainer.optim]\nlr = -1.0\n", [], ["trainer.optim.lr"]),
    # contradicting shared fields
    ("shared-max-steps", "max_steps = 5\n[trainer]\nmax_steps = 6\n", [], ["trainer.max_steps", "max_steps"]),
    ("sections-max-steps", "[trainer]\nmax_steps = 5\n[orchestrator]\nmax_steps = 6\n", [], ["disagree"]),
    ("shared-seq-len", "seq_len = 100\n[orchestrator]\nseq_len = 200\n", [], ["orchestrator.seq_len"]),
    ("shared-model", '[model]\nname = "a/b"\n[inference.model]\nname = "c/d"\n', [], ["inference.model.name"]),
    ("shared-async", "max_async_level = 1\n[trainer]\nmax_async_level = 2\n", [], ["trainer.max_async_level"]),
    ("shared-ckpt", "[ckpt]\ninterval = 2\n[trainer.ckpt]\ninterval = 3\n", [], ["trainer.ckpt.interval"]),
    ("shared-cli", "max_steps = 5\n", ["--orchestrator.max-steps", "7"], ["orchestrator.max_steps"]),
    # missing files and directories
    ("missing-toml", None, ["@", "missing.toml"], ["missing.toml"]),
    ("missing-model-dir", None, ["--model.name", "/no/such/model"], ["/no/such/model"]),
    ("missing-checkpoint", None, ["--ckpt.resume-step", "-1"], ["checkpoints"]),
    ("missing-checkpoint-step", None, ["--ckpt.resume-step", "3"], ["step_3"]),
    ("missing-env-file", f'{ENV}id = "/no/such/env.py"\n', [], ["orchestrator.env[0]", "/no/such/env.py"]),
    # invalid TOML
    ("toml-no-value", "max_steps = \n", [], ["rl.toml"]),
    ("toml-open-table", "[trainer\n", [], ["rl.toml"]),
    ("toml-duplicate", "max_steps = 1\nmax_steps = 2\n", [], ["rl.toml"]),
    ("toml-bad-string", 'output_dir = "unterminated\n', [], ["rl.toml"]),
    # bad import paths
    ("import-module", f'{LOSS}import_path = "no_such_module.fn"\n', [], ["rl.toml: `trainer.loss`", "no_such_module"]),
    (
        "import-attribute",
        f'{LOSS}import_path = "json.no_such_loss"\n',
        [],
        ["rl.toml: `trainer.loss`", "json.no_such_loss"],
    ),
    ("import-shape", f'{LOSS}import_path = "nodots"\n', [], ["rl.toml: `trainer.loss`", "nodots"]),
    (
        "import-advantage",
        f'{ADV}import_path = "json.no_such_adv"\n',
        [],
        ["rl.toml: `orchestrator.advantage`", "no_such_adv"],
    ),
    (
        "import-cli",
        "seq_len = 64\n",
        ["--trainer.loss.type", "custom", "--trainer.loss.import-path", "json.nope"],
        ["command line: `trainer.loss`", "json.nope"],
    ),
    (
        "import-kwargs",
        f'{LOSS}import_path = "prime_rl.trainer.rl.losses.ppo_clip.ppo_clip_loss"\nkwargs = {{ bogus = 1 }}\n',
        [],
        ["rl.toml: `trainer.loss`", "bogus"],
    ),
    # bad environment ids and arguments
    ("env-id", f'{ENV}id = "no-such-env"\n', [], ["rl.toml: `orchestrator.env[0]`", "no-such-env"]),
    ("env-id-second", f'{ENV}id = "reverse-text"\n{ENV}id = "no-such-env"\n', [], ["rl.toml: `orchestrator.env[1]`"]),
    (
        "env-args-second",
        f'{ENV}id = "reverse-text"\n{ENV}id = "one-word"\nargs = {{ bogus = 1 }}\n',
        [],
        ["rl.toml: `orchestrator.env[1]`", "bogus"],
    ),
    (
        "env-range-second",
        f'{ENV}id = "reverse-text"\n{ENV}id = "one-word"\nweight = 0\n',
        [],
        ["rl.toml): `orchestrator.env[1].weight`"],
    ),
    (
        "env-unknown-second",
        f'{ENV}id = "reverse-text"\n{ENV}id = "one-word"\nwieght = 1\n',
        [],
        ["unknown key `orchestrator.env[1].wieght`"],
    ),
    (
        "env-type-second",
        f'{ENV}id = "reverse-text"\n{ENV}id = "one-word"\nargs = 3\n',
        [],
        ["`orchestrator.env[1].args`"],
    ),
    (
        "env-duplicate-names",
        f'{ENV}id = "reverse-text"\n{ENV}id = "reverse-text"\n',
        [],
        ["`orchestrator.env`", "must be unique"],
    ),
    ("env-args", f'{ENV}id = "reverse-text"\nargs = {{ bogus = 1 }}\n', [], ["orchestrator.env[0]", "bogus"]),
    ("eval-env-id", f'{EVAL_ENV}id = "no-such-env"\n', [], ["orchestrator.eval.env[0]", "no-such-env"]),
    ("eval-env-args", f'{EVAL_ENV}id = "reverse-text"\nargs = {{ bogus = 1 }}\n', [], ["eval.env[0]", "bogus"]),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


@pytest.fixture
def previous_run(tmp_path: Path) -> Path:
    """An output directory holding an earlier run's files (a fresh start with `clean` would delete some)."""
    out = tmp_path / "out"
    for name in ("rollouts/step_0/STABLE", "broadcasts/step_1/STABLE", "metrics/trainer.jsonl", "logs/rl.log"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("earlier run\n")
    return out


@pytest.mark.parametrize(("toml", "extra", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_config_one_line_error_nothing_touched(
    tmp_path, previous_run, monkeypatch, capsys, toml, extra, expected
):
    monkeypatch.chdir(tmp_path)
    argv = ["--output-dir", str(previous_run)]
    if toml is not None:
        (tmp_path / "rl.toml").write_text(toml)
        argv = ["@", str(tmp_path / "rl.toml"), *argv]
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *extra])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rl: error: "), lines
    for text in expected:
        assert text in lines[0], lines[0]
    assert _snapshot(tmp_path) == before


def test_enough_cases():
    assert len(CASES) >= 50


@pytest.mark.parametrize(
    "extra",
    [["--trainer.optim.lr", "x"], ["--orchestrator.batch-size", "0"], ["--max-steps", "1e3"]],
    ids=["lr", "batch-size", "max-steps"],
)
def test_cli_only_value_is_not_blamed_on_the_toml(tmp_path, capsys, extra):
    (tmp_path / "rl.toml").write_text("seq_len = 64\n")
    with pytest.raises(SystemExit):
        main(["@", str(tmp_path / "rl.toml"), "--output-dir", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert "(command line)" in err and "rl.toml" not in err


def test_bad_environment_variable_names_the_variable(previous_run, monkeypatch, capsys):
    monkeypatch.setenv("PRIME_MAX_STEPS", "many")
    before = _snapshot(previous_run)
    with pytest.raises(SystemExit) as exit_info:
        main(["--output-dir", str(previous_run)])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "max_steps" in lines[0], lines
    assert _snapshot(previous_run) == before


@pytest.mark.parametrize(
    ("toml", "expected"),
    [("[trainer]\nfoo = 1\n", "trainer.foo"), ("max_steps = \n", "rl.toml")],
    ids=["unknown-key", "invalid-toml"],
)
def test_console_script_exits_2_with_one_line(tmp_path, previous_run, toml, expected):
    (tmp_path / "rl.toml").write_text(toml)
    before = _snapshot(previous_run)
    rl = Path(sys.executable).parent / "rl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_") or k == "PRIME_RL_CACHE"}
    result = subprocess.run(
        [str(rl), "@", "rl.toml", "--output-dir", str(previous_run)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rl: error: ") and expected in lines[0], lines
    assert _snapshot(previous_run) == before
