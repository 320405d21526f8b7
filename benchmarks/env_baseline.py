"""Base-model reward of the built-in environments: which one is a good main task for RL on CPU?

Samples SmolLM2-135M-Instruct (transformers `generate`, temperature 1.0, top_k/top_p off) through each environment's
own rollout and rubric code, with an in-process client standing in for the inference server (concurrent requests
are batched into one `generate` call). Reports per environment: mean reward, mean within-group reward std (GRPO-style
advantages need variance inside a group), fraction of groups with zero std, mean model tokens per rollout, and the
mean of every rubric metric. The last line compares the main task's base reward to reverse-text's.

    .venv/bin/python benchmarks/env_baseline.py --envs one-word reverse-text guess-number --prompts 16 --samples 8
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prime_rl.environments import Completion, SamplingConfig, load_environment
from prime_rl.utils.models import resolve_model_path
from prime_rl.utils.threads import setup_threads


class LocalClient:
    """`InferenceClient` look-alike on a local transformers model; batches whatever requests are pending together.
    Logprobs are not computed (returned as 0.0): only rewards are measured here."""

    def __init__(self, model, tokenizer, max_batch: int = 64):
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.pending: list[tuple[list[int], SamplingConfig, asyncio.Future]] = []
        self.worker: asyncio.Task | None = None

    async def chat(self, messages, sampling, n=1, seed=None):
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return await self.chat_tokens(ids, sampling, n)

    async def chat_tokens(self, prompt_ids, sampling, n=1, seed=None, messages=None):
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(n)]
        self.pending.extend((list(prompt_ids), sampling, f) for f in futures)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.sleep(0)  # let every runnable rollout enqueue its request first
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            for (_, _, future), completion in zip(batch, self._generate(batch), strict=True):
                future.set_result(completion)

    @torch.no_grad()
    def _generate(self, batch) -> list[Completion]:
        sampling = batch[0][1]
        width = max(len(p) for p, _, _ in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p, _, _ in batch])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p, _, _ in batch])
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            do_sample=True,
            temperature=sampling.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=sampling.max_tokens,
            pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        new = out[:, width:]
        completions = []
        for row, (prompt, _, _) in enumerate(batch):
            ids = new[row].tolist()
            eos = self.tokenizer.eos_token_id
            finish = "stop" if eos in ids else "length"
            ids = ids[: ids.index(eos) + 1] if eos in ids else ids
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(Completion(text, prompt, ids, [0.0] * len(ids), finish, 0))  # logprobs unused here
        return completions


async def measure(env, client, prompts: int, samples: int, sampling: SamplingConfig) -> dict:
    examples = env.dataset()[:prompts]
    groups = await asyncio.gather(*(env.run_group(client, ex, sampling, samples) for ex in examples))
    rewards_E_G = [[r.reward for r in group] for group in groups]
    stds = [statistics.pstdev(g) for g in rewards_E_G]
    rollouts = [r for group in groups for r in group]
    metric_names = sorted({k for r in rollouts for k in r.metrics})
    return {
        "reward": statistics.mean(r for g in rewards_E_G for r in g),
        "group_std": statistics.mean(stds),
        "zero_std_groups": sum(s == 0 for s in stds) / len(stds),
        "tokens": statistics.mean(r.completion_length for r in rollouts),
        "errors": sum(r.error is not None for r in rollouts),
        "metrics": {k: statistics.mean(r.metrics.get(k, 0.0) for r in rollouts) for k in metric_names},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["one-word", "reverse-text", "guess-number"])
    parser.add_argument("--main-task", default="one-word")
    parser.add_argument("--baseline-task", default="reverse-text")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    setup_threads(args.threads, "inference", "--threads")
    torch.manual_seed(args.seed)
    path = resolve_model_path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    sampling = SamplingConfig(temperature=1.0, max_tokens=args.max_tokens)
    results = {}
    for name in args.envs:
        env = load_environment(name)
        env.setup(tokenizer)
        start = time.perf_counter()
        results[name] = asyncio.run(measure(env, LocalClient(model, tokenizer), args.prompts, args.samples, sampling))
        r = results[name]
        metrics = " ".join(f"{k}={v:.3f}" for k, v in r["metrics"].items())
        print(
            f"{name}: mean reward {r['reward']:.3f}, mean in-group std {r['group_std']:.3f}, zero-std groups "
            f"{r['zero_std_groups']:.2f}, mean model tokens {r['tokens']:.1f}, errors {r['errors']}, "
            f"metrics [{metrics}], {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    if args.main_task in results and args.baseline_task in results:
        ours, base = results[args.main_task]["reward"], results[args.baseline_task]["reward"]
        print(
            f"{args.main_task} base-model mean reward: {ours:.3f} reward "
            f"(baseline: {base:.3f} reward, ratio: {ours / max(base, 1e-9):.2f}x)"
        )


if __name__ == "__main__":
    main()
