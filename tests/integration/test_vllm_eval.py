"""`eval` starting its own inference server with `inference.engine = "vllm"`: the base model and an exported step of
a run, switched in through the vLLM engine's `/update_weights`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prime_rl.eval.cli import main

pytestmark = pytest.mark.vllm
MODEL = "smollm2-135m-instruct"


def test_eval_self_started_vllm_server(tmp_path: Path, capsys: pytest.CaptureFixture):
    pytest.importorskip("vllm", reason="vLLM is not installed (`make test-vllm` installs its CPU build)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_rl.utils.models import resolve_model_path
    from prime_rl.weights.export import export_hf

    model_dir = resolve_model_path(MODEL)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * p.std() * torch.randn_like(p))
    run, out = tmp_path / "run", tmp_path / "out"
    export_hf(model, AutoTokenizer.from_pretrained(model_dir), run, 1)
    del model
    envs = json.dumps([{"id": "reverse-text", "num_examples": 2}])
    main([
        *("--model.name", MODEL, "--weights-dir", str(run), "--output-dir", str(out), "--env", envs),
        *("--rollouts-per-example", "2", "--sampling.max-tokens", "8", "--log.level", "warning"),
        *("--inference.engine", "vllm", "--inference.vllm.enforce-eager", "--inference.num-threads", "2"),
        *("--inference.model.max-model-len", "1024", "--client.health-timeout", "1500"),
    ])  # fmt: skip
    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    assert list(results) == ["base", "step_1"]
    assert [r["policy_step"] for r in results.values()] == [0, 1]
    assert results["step_1"]["weight_dir"] == str(run / "weights" / "step_1")
    for entry in results.values():
        metrics = entry["metrics"]
        assert metrics["reverse-text/num_examples"] == 2.0 and metrics["reverse-text/errored"] == 0.0
        assert 1.0 <= metrics["reverse-text/completion_len"] <= 8.0
    assert "vLLM engine ready" in (out / "eval" / "inference.log").read_text()
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split(" | ")[0].strip() for r in rows] == ["base", "step_1"]
