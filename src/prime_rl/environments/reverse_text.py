"""`reverse-text`: reverse a short generated phrase character by character.

Reward: `lcs_ratio(parsed answer, reversed phrase)` (`2 * LCS / (len(a) + len(b))`), where the answer is parsed
from `<answer>...</answer>` tags by `parse_answer` (no tags → 0); with `strict = True` only a reply that is exactly
one closed `<answer>...</answer>` block scores. Phrases are 2-4 common words drawn with a seeded
RNG, so the dataset is identical on every machine and needs no download.
"""

from __future__ import annotations

import random
import re

from prime_rl.environments.parsing import last_assistant_text, lcs_ratio, parse_answer
from prime_rl.environments.rubric import Rubric
from prime_rl.environments.single_turn import SingleTurnEnv
from prime_rl.environments.types import Example

_WORD_TEXT = (
    "apple river stone cloud green quick light house music paper water night bread table chair dream smile "
    "garden yellow silver window mountain ocean forest winter summer orange planet rocket camera pencil "
    "little happy brave gentle bright quiet tiger horse eagle whale candle castle bridge market doctor "
    "friend letter number circle square purple shadow thunder coffee butter cookie island desert"
)
WORDS = tuple(_WORD_TEXT.split())

_ONLY_ANSWER_RE = re.compile(r"\s*<answer>((?:(?!<answer>|</answer>).)*)</answer>\s*", re.DOTALL | re.IGNORECASE)

PROMPT = (
    "Reverse the text '{text}' character by character. Put only the reversed text between <answer> and </answer> tags."
)


def make_examples(num_examples: int, seed: int, min_words: int = 2, max_words: int = 4) -> list[Example]:
    """`num_examples` phrases from `random.Random(seed)`; the answer is the phrase reversed."""
    rng = random.Random(seed)
    examples = []
    for i in range(num_examples):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words)))
        prompt = [{"role": "user", "content": PROMPT.format(text=text)}]
        examples.append(Example(example_id=i, prompt=prompt, answer=text[::-1], info={"text": text}))
    return examples


def lcs_reward(completion: list[dict], answer: str) -> float:
    """LCS ratio between the tagged answer of the last reply and the reversed text; 0 without `<answer>` tags."""
    parsed = parse_answer(last_assistant_text(completion))
    return 0.0 if parsed is None else lcs_ratio(parsed, answer)


def strict_lcs_reward(completion: list[dict], answer: str) -> float:
    """`lcs_reward` when the last reply is one closed `<answer>...</answer>` block and nothing else, else 0: text
    after the block, a second block or a truncated block would otherwise cost nothing (README: the length drift)."""
    match = _ONLY_ANSWER_RE.fullmatch(last_assistant_text(completion))
    return 0.0 if match is None else lcs_ratio(match.group(1).strip(), answer)


def load_environment(
    num_train_examples: int = 1000,
    num_eval_examples: int = 100,
    seed: int = 0,
    min_words: int = 2,
    max_words: int = 4,
    strict: bool = False,
) -> SingleTurnEnv:
    train = make_examples(num_train_examples, seed, min_words, max_words)
    evaluation = make_examples(num_eval_examples, seed + 1_000_003, min_words, max_words)
    rubric = Rubric([strict_lcs_reward if strict else lcs_reward])
    return SingleTurnEnv("reverse-text", train, rubric, evaluation, "<answer>{answer}</answer>")
