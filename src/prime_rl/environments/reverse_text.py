"""`reverse-text`: reverse a short generated phrase character by character.

Reward: `lcs_ratio(parsed answer, reversed phrase)` (`2 * LCS / (len(a) + len(b))`), where the answer is parsed
from `<answer>...</answer>` tags by `parse_answer` (no tags → 0); with `strict = True` only a reply that is exactly
one closed `<answer>...</answer>` block scores. `reversal_weight` adds the reversal reward (the LCS ratio above its
chance floor, `reversal_score`), `lcs_weight` scales the LCS ratio. Phrases are 2-4 common words drawn with a seeded
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


# Strings of common letters that reverse nothing score LCS ratios of 0.29-0.43 on average (random letters, the phrase
# unreversed, another phrase reversed, the answer shuffled: `probe.py --floors`), single groups up to about 0.5.
CHANCE_FLOOR = 0.5


def reversal_score(parsed: str, answer: str) -> float:
    """The LCS ratio rescaled so that `CHANCE_FLOOR` maps to 0 and an exact reversal to 1, clipped at 0:
    `max(0, (ratio - floor) / (1 - floor))`. One wrong letter in a 17-letter answer scores 0.88."""
    return max(0.0, (lcs_ratio(parsed, answer) - CHANCE_FLOOR) / (1.0 - CHANCE_FLOOR))


def strict_answer(completion: list[dict]) -> str | None:
    """The answer of a last reply that is exactly one closed `<answer>...</answer>` block, else None."""
    match = _ONLY_ANSWER_RE.fullmatch(last_assistant_text(completion))
    return None if match is None else match.group(1).strip()


def lcs_reward(completion: list[dict], answer: str) -> float:
    """LCS ratio between the tagged answer of the last reply and the reversed text; 0 without `<answer>` tags."""
    parsed = parse_answer(last_assistant_text(completion))
    return 0.0 if parsed is None else lcs_ratio(parsed, answer)


def strict_lcs_reward(completion: list[dict], answer: str) -> float:
    """`lcs_reward` when the last reply is one closed `<answer>...</answer>` block and nothing else, else 0: text
    after the block, a second block or a truncated block would otherwise cost nothing (README: the length drift)."""
    parsed = strict_answer(completion)
    return 0.0 if parsed is None else lcs_ratio(parsed, answer)


def reversal_reward(completion: list[dict], answer: str) -> float:
    """`reversal_score` of the tagged answer of the last reply (parsed as `lcs_reward` does); 0 without tags."""
    parsed = parse_answer(last_assistant_text(completion))
    return 0.0 if parsed is None else reversal_score(parsed, answer)


def strict_reversal_reward(completion: list[dict], answer: str) -> float:
    """`reversal_score` of the answer when the last reply is one closed `<answer>` block (as `strict_lcs_reward`)."""
    parsed = strict_answer(completion)
    return 0.0 if parsed is None else reversal_score(parsed, answer)


def load_environment(
    num_train_examples: int = 1000,
    num_eval_examples: int = 100,
    seed: int = 0,
    min_words: int = 2,
    max_words: int = 4,
    strict: bool = False,
    lcs_weight: float = 1.0,
    reversal_weight: float | None = None,
) -> SingleTurnEnv:
    """`strict` selects the strict parsing for every reward; `reversal_weight = None` leaves the reversal reward out,
    0 logs it as a metric only (beside the LCS ratio, logged whatever `lcs_weight`)."""
    train = make_examples(num_train_examples, seed, min_words, max_words)
    evaluation = make_examples(num_eval_examples, seed + 1_000_003, min_words, max_words)
    funcs, weights = [strict_lcs_reward if strict else lcs_reward], [lcs_weight]
    if reversal_weight is not None:
        funcs, weights = [*funcs, strict_reversal_reward if strict else reversal_reward], [*weights, reversal_weight]
    rubric = Rubric(funcs, weights)
    return SingleTurnEnv("reverse-text", train, rubric, evaluation, "<answer>{answer}</answer>")
