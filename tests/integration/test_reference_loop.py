"""The oracle of the async loop: `rl` with `max_async_level = 0` (three processes) trains on the same batches and ends
with the same weights as the single-process reference loop (`prime_rl.reference`), from one TOML."""

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from prime_rl.launcher.config import RLConfig
from prime_rl.reference.loop import reference_loop
from prime_rl.utils.config import parse_config
from prime_rl.utils.metrics import read_metrics
from prime_rl.utils.net import free_port
from prime_rl.weights.state import unique_state_dict


def _config(tmp_path: Path, model_dir: Path) -> Path:
    path = tmp_path / "rl.toml"
    path.write_text(
        f'output_dir = "{tmp_path / "out"}"\nmax_steps = 3\nmax_async_level = 0\nseq_len = 256\n'
        f'[model]\nname = "{model_dir}"\n[inference]\nnum_threads = 1\n[inference.server]\nport = {free_port()}\n'
        # One group in flight at a time: the engine then never batches two requests, whose shared forward would differ
        # from a lone one in the last bit (docs/async.md, "The reference loop").
        "[orchestrator]\nbatch_size = 8\nrollouts_per_example = 4\nmax_concurrent = 4\nseed = 7\n"
        "[orchestrator.sampling]\nmax_tokens = 12\n"
        '[[orchestrator.env]]\nid = "one-word"\nargs = { num_train_examples = 32 }\n'
        "[trainer]\nnum_threads = 1\n[trainer.optim]\nlr = 1e-3\n"
    )
    return path


def test_rl_at_async_level_0_equals_the_reference_loop(tmp_path, tiny_model_dir):
    config_path = _config(tmp_path, tiny_model_dir)
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    orchestrator = read_metrics(out / "metrics/orchestrator.jsonl")
    trainer = read_metrics(out / "metrics/trainer.jsonl")

    reference = reference_loop(parse_config(RLConfig, ["@", str(config_path)]))

    assert [r["batch/digest"] for r in orchestrator] == reference.digests
    assert [r["batch/digest"] for r in trainer] == reference.digests
    assert len(set(reference.digests)) == 3
    assert [r["reward/mean"] for r in orchestrator] == reference.rewards
    rl_weights = load_file(str(out / "weights/step_3/model.safetensors"))
    ref_weights = unique_state_dict(reference.model)
    assert set(rl_weights) == set(ref_weights)
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(rl_weights[name], tensor, rtol=0, atol=1e-6, msg=name)
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any((base[n] - t).abs().max() > 1e-4 for n, t in ref_weights.items())  # training moved the weights
