"""verifiers v1 tasksets through `rl` on the tiny model (marker `verifiers`, run by `make test-verifiers` in its own
venv): a single-turn taskset on the `null` harness and the same taskset on a two-turn harness defined here. The batch
of step 0 has the environment's rewards, masks off on the environment tokens between turns, and logprobs equal to a
forward pass of the base model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("verifiers.v1")
pytestmark = pytest.mark.verifiers

from prime_rl.transport.filesystem import FileSystemReceiver  # noqa: E402
from prime_rl.utils.net import free_port  # noqa: E402
from verifiers_tasksets import COUNT_TASKSET  # noqa: E402

# A harness (the program the model runs in) that asks once, then follows up with a second user message.
HARNESS = """
import verifiers.v1 as vf
from verifiers.v1.harnesses.utils.launch import launch_chat_program

PROGRAM = '''# /// script
# requires-python = ">=3.10"
# dependencies = ["openai"]
# ///
import argparse
import asyncio

from openai import AsyncOpenAI


async def main():
    parser = argparse.ArgumentParser()
    for flag in ("--base-url", "--api-key", "--model", "--prompt"):
        parser.add_argument(flag, default="")
    args, _ = parser.parse_known_args()
    client = AsyncOpenAI(base_url=args.base_url, api_key=args.api_key)
    messages = [{"role": "user", "content": args.prompt}]
    for follow_up in ("Again, shorter.", None):
        reply = (await client.chat.completions.create(model=args.model, messages=messages)).choices[0].message
        messages.append({"role": "assistant", "content": reply.content})
        if follow_up is not None:
            messages.append({"role": "user", "content": follow_up})


asyncio.run(main())
'''


class TwoTurnHarness(vf.Harness[vf.HarnessConfig]):
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(self, ctx, trace, runtime, endpoint, secret, mcp_urls, data, tool_interception_url=None):
        system_prompt, prompt = self.resolve_prompt(data)
        return await launch_chat_program(
            PROGRAM, self.config, ctx, trace, runtime, endpoint, secret, mcp_urls, system_prompt, prompt
        )


__all__ = ["TwoTurnHarness"]
"""

FOLLOW_UP = "<|im_end|>\n<|im_start|>user\nAgain, shorter.<|im_end|>\n<|im_start|>assistant\n"


def forward_logprobs(model, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + completion_ids])).logits[0, len(prompt_ids) - 1 : -1]
    lp = torch.log_softmax(logits.float(), dim=-1)
    return lp.gather(1, torch.tensor(completion_ids)[:, None])[:, 0]


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verifiers_rl")
    (tmp / "count_taskset.py").write_text(COUNT_TASKSET)
    (tmp / "two_turn_harness.py").write_text(HARNESS)
    config = tmp / "rl.toml"
    config.write_text(
        f'output_dir = "{tmp / "out"}"\nmax_steps = 1\nmax_async_level = 0\nseq_len = 256\n'
        f'[model]\nname = "{tiny_model_dir}"\n[inference.server]\nport = {free_port()}\n'
        "[orchestrator]\nbatch_size = 8\nrollouts_per_example = 2\n[orchestrator.sampling]\nmax_tokens = 6\n"
        '[[orchestrator.env]]\nid = "count_taskset"\nname = "single"\n'
        '[[orchestrator.env]]\nid = "count_taskset"\nname = "multi"\nargs = { harness = { id = "two_turn_harness" } }\n'
    )
    uv_dir = str(Path(shutil.which("uv") or sys.executable).parent)
    paths = [str(tmp), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), "PATH": f"{uv_dir}:{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "prime_rl.rl", "@", str(config)], capture_output=True, text=True, timeout=900, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:] + (tmp / "out/logs/orchestrator.log").read_text()[-3000:]
    assert "generator didn't stop" not in (tmp / "out/logs/orchestrator.log").read_text()  # env.close() ran
    return FileSystemReceiver(tmp / "out").receive(0, timeout=1).samples


def test_batch_rewards_and_masks(run, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    samples = run
    assert len(samples) == 8 and {s.env_name for s in samples} == {"single", "multi"}
    for s in samples:
        model_text = tokenizer.decode([t for t, m in zip(s.completion_ids, s.completion_mask, strict=True) if m])
        env_ids = [t for t, m in zip(s.completion_ids, s.completion_mask, strict=True) if not m]
        if s.env_name == "single":
            assert all(s.completion_mask) and len(s.completion_ids) <= 6
            reply = tokenizer.decode(s.completion_ids, skip_special_tokens=True).strip()  # as `trace.last_reply`
            assert s.reward == pytest.approx((len(reply) % 7) / 6)
        else:
            # Two replies of at most 6 tokens with the follow-up's tokens between them, masked, logprob 0.
            first = s.completion_mask.index(False)
            assert all(s.completion_mask[:first]) and first <= 6
            assert FOLLOW_UP in tokenizer.decode(env_ids) and 1 <= sum(s.completion_mask[first:]) <= 6
            assert all(lp == 0.0 for lp, m in zip(s.completion_logprobs, s.completion_mask, strict=True) if not m)
        assert model_text


def test_logprobs_equal_a_forward_pass_of_the_base_model(run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    for s in run:
        assert s.policy_step == 0 and set(s.completion_temperatures) == {1.0}
        expected = forward_logprobs(model, s.prompt_ids, s.completion_ids)
        mask = torch.tensor(s.completion_mask)
        got = torch.tensor(s.completion_logprobs)
        torch.testing.assert_close(got[mask], expected[mask], atol=1e-4, rtol=0)
