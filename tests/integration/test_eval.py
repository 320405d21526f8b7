"""`eval` against a real tiny-model inference server: self-started (child process) and already running."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prime_rl.eval.cli import main
from prime_rl.weights.export import export_hf

ALWAYS_ENV = """
from prime_rl.environments import Example, Rubric, SingleTurnEnv


def one(completion) -> float:
    return 1.0


def load_environment(n: int = 3):
    examples = [Example(i, [{"role": "user", "content": f"Say {i}"}], str(i)) for i in range(n)]
    return SingleTurnEnv("always", examples, Rubric([one]), examples)
"""


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with complete `weights/step_1`, `weights/step_2` and an incomplete `weights/step_3`."""
    run = tmp_path_factory.mktemp("run")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    for step in (1, 2, 3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        export_hf(model, tokenizer, run, step)
    (run / "weights" / "step_3" / "STABLE").unlink()
    (run / "always_env.py").write_text(ALWAYS_ENV)
    return run


def eval_args(model_dir: Path, run: Path, out: Path, *extra: str, env_dir: Path | None = None) -> list[str]:
    env_file = (env_dir or run) / "always_env.py"
    envs = json.dumps([{"id": "reverse-text", "num_examples": 2}, {"id": str(env_file), "args": {"n": 3}}])
    return [
        *("--model.name", str(model_dir), "--weights-dir", str(run), "--output-dir", str(out)),
        *("--env", envs, "--rollouts-per-example", "2", "--sampling.max-tokens", "1", "--log.level", "warning"),
        *extra,
    ]


def check_metrics(metrics: dict) -> None:
    assert metrics["always/avg@2"] == metrics["always/pass@1"] == metrics["always/pass@2"] == 1.0
    assert metrics["always/num_examples"] == 3.0 and metrics["reverse-text/num_examples"] == 2.0
    for env in ("always", "reverse-text"):
        assert metrics[f"{env}/completion_len"] == 1.0  # max_tokens = 1
        assert metrics[f"{env}/truncated"] == 1.0
        assert metrics[f"{env}/errored"] == 0.0
    assert metrics["reverse-text/avg@2"] == 0.0  # one token cannot hold an <answer> tag


def test_eval_self_started_server_every_complete_step(tmp_path, tiny_model_dir, run_dir, capsys):
    out = tmp_path / "out"
    main(eval_args(tiny_model_dir, run_dir, out, "--inference.num-threads", "1"))
    document = json.loads((out / "eval" / "results.json").read_text())
    assert document["model"] == str(tiny_model_dir) and document["rollouts_per_example"] == 2
    results = document["results"]
    assert list(results) == ["base", "step_1", "step_2"]  # step_3 has no STABLE marker
    assert [r["policy_step"] for r in results.values()] == [0, 1, 2]
    assert results["step_2"]["weight_dir"] == str(run_dir / "weights" / "step_2")
    for entry in results.values():
        check_metrics(entry["metrics"])
    table = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in table[0].split(" | ")]
    assert header == ["policy", "env", "avg@2", "pass@1", "pass@2", "len", "truncated", "errored"]
    rows = [line.split(" | ") for line in table[2:]]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        (label, env) for label in ("base", "step_1", "step_2") for env in ("reverse-text", "always")
    ]
    assert rows[1][2:] == ["1.0000", "1.0000", "1.0000", "1.0", "     1.00", "   0.00"]
    assert (out / "eval" / "inference.log").is_file()


@pytest.fixture(scope="module")
def running_server(tiny_model_dir: Path, run_dir: Path):
    """An inference server in this process (as in test_inference_server.py) whose output_dir is the run."""
    import uvicorn

    from prime_rl.inference.config import InferenceConfig
    from prime_rl.inference.server import setup_app, setup_engine
    from prime_rl.utils.net import free_port

    port = free_port()
    config = InferenceConfig(
        model={"name": str(tiny_model_dir), "max_model_len": 256},
        server={"port": port},
        output_dir=run_dir,
        num_threads=1,
    )
    engine = setup_engine(config)
    uv = uvicorn.Server(uvicorn.Config(setup_app(config, engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    uv.should_exit = True
    thread.join(timeout=10)
    engine.shutdown()


def test_eval_running_server_selected_step(tmp_path, tiny_model_dir, run_dir, running_server, capsys):
    out = tmp_path / "out"
    main(
        eval_args(tiny_model_dir, run_dir, out, "--client.base-url", running_server, "--no-eval-base", "--steps", "[2]")
    )
    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    assert list(results) == ["step_2"] and results["step_2"]["policy_step"] == 2
    check_metrics(results["step_2"]["metrics"])
    assert not (out / "eval" / "inference.log").exists()

    # A weight directory outside the server's output_dir is refused by the server: one line, exit 1.
    other = tmp_path / "other"
    export_hf(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir), other, 1
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        args = eval_args(
            tiny_model_dir, other, out, "--client.base-url", running_server, "--no-eval-base", env_dir=run_dir
        )
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("eval: error: http://127.0.0.1:")
    assert "/update_weights" in err and "HTTP 403" in err and "outside the output directory" in err


def test_eval_missing_step_fails_before_starting_a_server(tmp_path, tiny_model_dir, run_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(eval_args(tiny_model_dir, run_dir, tmp_path / "out", "--steps", "[3]"))
    assert exit_info.value.code == 2
    assert "no complete (STABLE) weights/step_N for steps [3]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
