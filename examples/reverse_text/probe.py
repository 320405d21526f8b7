"""How much learning signal a model's groups carry on reverse-text: sample `k` answers per eval prompt in-process
(transformers, no server) and print the reward, the spread within groups and the advantages it turns into.

    python examples/reverse_text/probe.py outputs/reverse_text/sft/weights/step_40 --temperature 1.0 0.5
    python examples/reverse_text/probe.py --batches outputs/reverse_text/rollouts_archive --group-size 8
    python examples/reverse_text/probe.py --batches outputs/reverse_text/rollouts --rescore --strict
    python examples/reverse_text/probe.py --floors    # what answers that do not reverse the phrase score
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def group_stats(rewards_E_G: list[list[float]], tagged_E_G: list[list[bool]] | None = None) -> dict[str, float]:
    """Reward mean, mean within-group std (population), the fraction of groups whose rewards are all equal, and the
    mean |advantage| of the default (reward - group mean) and of GRPO ((reward - mean) / sample std)."""
    flat = [r for g in rewards_E_G for r in g]
    stds = [statistics.pstdev(g) for g in rewards_E_G]
    default_adv, grpo_adv = [], []
    for g in rewards_E_G:
        mean, std = statistics.mean(g), statistics.stdev(g)
        default_adv += [abs(r - mean) for r in g]
        grpo_adv += [abs(r - mean) / (std + 1e-6) for r in g]
    out = {
        "reward": statistics.mean(flat),
        "group_std": statistics.mean(stds),
        "zero_adv_groups": sum(max(g) == min(g) for g in rewards_E_G) / len(rewards_E_G),
        "exact": sum(r == 1.0 for r in flat) / len(flat),
        "adv_abs_default": statistics.mean(default_adv),
        "adv_abs_grpo": statistics.mean(grpo_adv),
    }
    if tagged_E_G is not None:
        out["tagged"] = sum(t for g in tagged_E_G for t in g) / len(flat)
    return out


def chance_floors(num_examples: int = 100, k: int = 8, seed: int = 0, score=None) -> dict[str, dict[str, float]]:
    """`group_stats` of answers that carry no reversal of the phrase, on the eval split: the phrase unreversed, its
    letters shuffled, random letters (word-list frequencies) of its length, and the reversal of another phrase;
    scored by `score(answer, reversed phrase)` (default: the LCS ratio)."""
    import random

    from prime_rl.environments.parsing import lcs_ratio
    from prime_rl.environments.reverse_text import WORDS, load_environment

    score = score or lcs_ratio

    rng = random.Random(seed)
    examples = load_environment(num_eval_examples=num_examples).eval_dataset()
    letters = "".join(WORDS)
    guesses = {
        "unreversed": lambda e: e.info["text"],
        "shuffled letters": lambda e: "".join(rng.sample(e.answer, len(e.answer))),
        "random letters": lambda e: "".join(rng.choice(letters) for _ in e.answer),
        "another phrase reversed": lambda e: rng.choice(examples).answer,
    }
    return {
        name: group_stats([[score(guess(e), e.answer) for _ in range(k)] for e in examples])
        for name, guess in guesses.items()
    }


def near_reversals(num_examples: int = 100, k: int = 8, seed: int = 0, score=None) -> dict[str, dict[str, float]]:
    """`group_stats` of answers that do reverse the phrase, on the eval split: the reversal with one letter replaced
    by another (a random position), with its first word only (the rest random letters), and exact."""
    import random

    from prime_rl.environments.parsing import lcs_ratio
    from prime_rl.environments.reverse_text import WORDS, load_environment

    score = score or lcs_ratio
    rng = random.Random(seed)
    examples = load_environment(num_eval_examples=num_examples).eval_dataset()
    letters = "".join(WORDS)

    def one_wrong(answer: str) -> str:
        i = rng.randrange(len(answer))
        return answer[:i] + rng.choice(sorted(set(letters) - {answer[i]})) + answer[i + 1 :]

    def first_word(answer: str) -> str:
        first, *rest = answer.split(" ")
        return " ".join([first, *("".join(rng.choice(letters) for _ in w) for w in rest)])

    guesses = {"one wrong letter": one_wrong, "first word only": first_word, "exact": lambda a: a}
    return {
        name: group_stats([[score(guess(e.answer), e.answer) for _ in range(k)] for e in examples])
        for name, guess in guesses.items()
    }


def print_floors(seed: int) -> None:
    """`chance_floors` and `near_reversals` under the LCS ratio and under `reversal_score`."""
    from prime_rl.environments.parsing import lcs_ratio
    from prime_rl.environments.reverse_text import reversal_score

    for label, score in (("lcs_ratio", lcs_ratio), ("reversal_score", reversal_score)):
        for name, stats in (chance_floors(seed=seed, score=score) | near_reversals(seed=seed, score=score)).items():
            print(format_stats(f"{label} | {name}", stats))


def format_stats(name: str, stats: dict[str, float]) -> str:
    return f"{name}: " + " | ".join(f"{k} {v:.3f}" for k, v in stats.items())


def load_tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    from prime_rl.utils.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(model_dir), padding_side="left")


def load_model(model_dir: str):
    import torch
    from transformers import AutoModelForCausalLM

    from prime_rl.utils.models import resolve_model_path

    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(model_dir), dtype=torch.float32)
    return load_tokenizer(model_dir), model.eval()


def sample_groups(tokenizer, model, num_examples: int, k: int, temperature: float, max_tokens: int, seed: int):
    """`k` sampled replies (greedy when `temperature` is 0) to each of the first `num_examples` eval prompts."""
    import torch

    from prime_rl.environments.reverse_text import load_environment

    examples = load_environment().eval_dataset()[:num_examples]
    prompts = [tokenizer.apply_chat_template(e.prompt, tokenize=False, add_generation_prompt=True) for e in examples]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    greedy = temperature == 0
    with torch.no_grad():
        out = model.generate(
            **inputs,
            do_sample=not greedy,
            temperature=temperature if not greedy else None,
            top_p=None,
            top_k=None,
            max_new_tokens=max_tokens,
            num_return_sequences=1 if greedy else k,
            pad_token_id=tokenizer.pad_token_id,
        )
    texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    n = 1 if greedy else k
    return examples, [texts[i * n : (i + 1) * n] for i in range(len(examples))]


def probe_model(args: argparse.Namespace) -> None:
    from prime_rl.environments.parsing import parse_answer
    from prime_rl.environments.reverse_text import load_environment

    funcs = load_environment(strict=args.strict, reversal_weight=0.0).rubric.funcs
    tokenizer, model = load_model(args.model)
    for temperature in args.temperature:
        examples, texts_E_G = sample_groups(
            tokenizer, model, args.num_examples, args.k, temperature, args.max_tokens, args.seed
        )
        tagged = [[parse_answer(t) is not None for t in g] for g in texts_E_G]
        for fn in funcs:
            rewards = [
                [fn([{"role": "assistant", "content": t}], e.answer) for t in g]
                for e, g in zip(examples, texts_E_G, strict=True)
            ]
            flat = [r for g in rewards for r in g]
            if temperature == 0:
                exact = sum(r == 1 for r in flat) / len(flat)
                print(f"T=0 (greedy) | {fn.__name__}: reward {statistics.mean(flat):.3f} | exact {exact:.3f}")
            else:
                print(format_stats(f"T={temperature} | {fn.__name__}", group_stats(rewards, tagged)))
        for e, g in list(zip(examples, texts_E_G, strict=True))[: args.show]:
            print(f"  {e.answer!r}: " + " ; ".join(repr(t) for t in g[:3]))


def rescore(samples, tokenizer, strict: bool) -> dict[str, list[float]]:
    """The LCS and reversal rewards of saved samples (training split of the default `reverse-text`), recomputed from
    their decoded completion tokens."""
    from prime_rl.environments.reverse_text import load_environment

    env = load_environment(strict=strict, reversal_weight=0.0)
    answers = {e.example_id: e.answer for e in env.dataset()}
    out = {fn.__name__: [] for fn in env.rubric.funcs}
    for s in samples:
        ids = [t for t, m in zip(s.completion_ids, s.completion_mask, strict=True) if m]
        completion = [{"role": "assistant", "content": tokenizer.decode(ids, skip_special_tokens=True)}]
        for fn in env.rubric.funcs:
            out[fn.__name__].append(fn(completion, answers[s.example_id]))
    return out


def probe_batches(args: argparse.Namespace) -> None:
    from prime_rl.run_dir import step_dirs
    from prime_rl.transport.filesystem import BATCH_FILE
    from prime_rl.transport.types import decode_batch

    tokenizer = load_tokenizer(args.model or "smollm2-135m-instruct") if args.rescore else None
    for step, where in sorted(step_dirs(Path(args.batches)).items()):
        samples = decode_batch((where / BATCH_FILE).read_bytes()).samples
        series = {"stored reward": [s.reward for s in samples]}
        if tokenizer is not None:
            series |= rescore(samples, tokenizer, args.strict)
        for name, rewards in series.items():
            groups = [rewards[i : i + args.group_size] for i in range(0, len(rewards), args.group_size)]
            print(format_stats(f"step {step} | {name}", group_stats(groups)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model dir or alias to sample from")
    parser.add_argument("--batches", help="a directory of `step_N/batch.bin` (a run's saved rollouts) to read instead")
    parser.add_argument("--group-size", type=int, default=8, help="rollouts per example of the saved batches")
    parser.add_argument(
        "--rescore", action="store_true", help="with --batches: also recompute the LCS and reversal rewards"
    )
    parser.add_argument("--strict", action="store_true", help="score with the strict parsing (rl.toml's)")
    parser.add_argument("--num-examples", type=int, default=16)
    parser.add_argument("-k", type=int, default=8, help="samples per prompt")
    parser.add_argument("--temperature", type=float, nargs="+", default=[1.0], help="0: one greedy reply")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="examples whose first replies are printed")
    parser.add_argument("--floors", action="store_true", help="print the reward of answers that do not reverse")
    args = parser.parse_args()
    if args.floors:
        print_floors(args.seed)
    elif args.batches:
        probe_batches(args)
    elif args.model:
        probe_model(args)
    else:
        parser.error("give a model or --batches")


if __name__ == "__main__":
    main()
