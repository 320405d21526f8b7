"""`[orchestrator.eval]`: every `interval` steps and after the last one (on the final policy) the orchestrator logs
`online_eval`'s `eval/...` metrics as their own records in `metrics/orchestrator.jsonl`."""

import asyncio

from test_orchestrator_loop import FakeServer, _run

from prime_rl.orchestrator.config import OrchestratorConfig
from prime_rl.orchestrator.evaluation import eval_due
from prime_rl.orchestrator.orchestrator import run
from prime_rl.utils.metrics import read_metrics


def test_eval_due_every_interval_and_after_the_last_step():
    config = OrchestratorConfig(max_steps=7, eval={"interval": 3})
    assert [s for s in range(7) if eval_due(config, s)] == [2, 5, 6]
    assert not any(eval_due(OrchestratorConfig(max_steps=7), s) for s in range(7))


def test_eval_records_in_orchestrator_metrics(tmp_path):
    evaluation = {"interval": 2, "num_examples": 2, "rollouts_per_example": 2, "sampling": {"max_tokens": 5}}
    with FakeServer() as server:
        _run(tmp_path, server.port, 1, max_steps=3, eval=evaluation)
    records = read_metrics(tmp_path / "metrics/orchestrator.jsonl")
    assert [(r["step"], "eval/policy" in r) for r in records] == [
        (0, False),
        (1, False),
        (1, True),
        (2, False),
        (2, True),
    ]
    final = records[-1]
    assert final["eval/policy"] == 3  # the final policy, loaded before the last evaluation
    assert final["eval/reverse-text/num_examples"] == 2
    for key in ("avg@2", "pass@1", "pass@2", "completion_len", "truncated", "errored"):
        assert f"eval/reverse-text/{key}" in final, key
    assert not any("reward/mean" in r for r in records if "eval/policy" in r)
    eval_requests = [b for b in server.bodies if b["max_tokens"] == 5]
    assert len(eval_requests) == 2 * 2 and all(b["n"] == 2 for b in eval_requests)


def test_resume_after_the_last_step_runs_only_the_missing_final_eval(tmp_path):
    evaluation = {"interval": 5, "num_examples": 1, "sampling": {"max_tokens": 5}}
    with FakeServer() as server:
        _run(tmp_path, server.port, 0, max_steps=2, eval=evaluation, ckpt={"interval": 1})
        path = tmp_path / "metrics/orchestrator.jsonl"
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:-1]) + "\n")  # killed while evaluating the final policy
        requests = server.requests
        config = OrchestratorConfig(
            output_dir=tmp_path, max_steps=2, max_async_level=0, batch_size=6, rollouts_per_example=3,
            client={"base_url": [f"http://127.0.0.1:{server.port}/v1"], "retry_timeout": 0},
            eval=evaluation, ckpt={"interval": 1, "resume_step": 2},
        )  # fmt: skip
        asyncio.run(run(config))
        assert server.requests == requests + 1  # one eval request, no training rollouts
        asyncio.run(run(config))
        assert server.requests == requests + 1  # logged now: nothing to do
    records = read_metrics(path)
    assert [(r["step"], r.get("eval/policy")) for r in records] == [(0, None), (1, None), (1, 2)]


def test_eval_base_runs_before_step_0_and_plot_prints_the_before_after_table(tmp_path, capsys):
    from prime_rl.utils.plot import main as plot_main

    evaluation = {"interval": 5, "num_examples": 2, "eval_base": True, "sampling": {"max_tokens": 5}}
    with FakeServer() as server:
        _run(tmp_path, server.port, 0, max_steps=2, eval=evaluation)
        assert server.bodies[0]["max_tokens"] == 5  # the base evaluation is the first request of the run
    records = read_metrics(tmp_path / "metrics/orchestrator.jsonl")
    assert [(r["step"], r.get("eval/policy")) for r in records] == [(-1, 0), (0, None), (1, None), (1, 2)]
    plot_main(["--output-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[1].split(" | ") == ["env         ", "metric        ", "policy 0", "policy 2", "change"]
    before, after = records[0], records[-1]
    row = out[3].split(" | ")
    assert row[:2] == ["reverse-text", "reward (avg@1)"]
    assert [float(x) for x in row[2:]] == [
        round(before["eval/reverse-text/avg@1"], 3),
        round(after["eval/reverse-text/avg@1"], 3),
        round(after["eval/reverse-text/avg@1"] - before["eval/reverse-text/avg@1"], 3),
    ]
    assert out[4].startswith("reverse-text | lcs_reward ")


def test_before_after_table_of_one_word_records():
    from prime_rl.eval.report import before_after_table

    def record(step, policy, avg, correct):
        return {"step": step, "eval/policy": policy, "eval/time": 1.0, "eval/train-q/avg@4": avg,
                "eval/train-q/pass@4": 1.0, "eval/train-q/reward/correct": correct}  # fmt: skip

    records = [record(-1, 0, 0.1, 0.25), {"step": 0, "reward/mean": 0.2}, record(9, 10, 0.5, 0.625)]
    assert before_after_table(records) == (
        "env     | metric         | policy 0 | policy 10 | change\n"
        "--------+----------------+----------+-----------+-------\n"
        "train-q | reward (avg@4) |    0.100 |     0.500 | +0.400\n"
        "train-q | correct        |    0.250 |     0.625 | +0.375"
    )
    assert before_after_table(records[:2]) is None
