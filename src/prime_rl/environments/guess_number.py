"""`guess-number`: a multi-turn game. The model guesses a secret integer; the environment answers "Higher." or
"Lower." until the guess is right or `max_turns` guesses were made.

A guess is the first integer inside the reply's `<answer>` tags (see `parse_answer`), or the first integer of the
reply when it has no tags. Reward `solved`: 1.0 if any guess hit the secret; `efficiency` (weight `efficiency_weight`,
default 0): `1 - (guesses used - 1) / max_turns` when solved, else 0. `num_guesses` is logged with weight 0.
"""

from __future__ import annotations

import random
import re

from prime_rl.environments.multi_turn import MultiTurnEnv
from prime_rl.environments.parsing import parse_answer
from prime_rl.environments.rubric import Rubric
from prime_rl.environments.types import Example

PROMPT = (
    "I am thinking of a whole number between 1 and {high}. Guess it. After each guess I will tell you whether "
    "the number is higher or lower. Reply with only your guess between <answer> and </answer> tags."
)
_INT_RE = re.compile(r"-?\d+")


def parse_guess(text: str) -> int | None:
    """First integer of the tagged answer (or of the whole reply when untagged); None when there is none."""
    tagged = parse_answer(text)
    match = _INT_RE.search(text if tagged is None else tagged)
    return None if match is None else int(match.group())


def guesses(completion: list[dict]) -> list[int | None]:
    return [parse_guess(m.get("content") or "") for m in completion if m.get("role") == "assistant"]


def make_examples(num_examples: int, seed: int, high: int) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(num_examples):
        secret = rng.randint(1, high)
        prompt = [{"role": "user", "content": PROMPT.format(high=high)}]
        examples.append(Example(i, prompt, answer=str(secret), info={"high": high}))
    return examples


class GuessNumberEnv(MultiTurnEnv):
    name = "guess-number"

    def __init__(self, train: list[Example], evaluation: list[Example], max_turns: int, efficiency_weight: float):
        self.max_turns = max_turns
        self._train, self._eval = train, evaluation

        def solved(completion: list[dict], answer: str) -> float:
            return float(int(answer) in guesses(completion))

        def efficiency(completion: list[dict], answer: str) -> float:
            made = guesses(completion)
            return 1.0 - made.index(int(answer)) / max_turns if int(answer) in made else 0.0

        def num_guesses(completion: list[dict]) -> float:
            return float(len(guesses(completion)))

        self.rubric = Rubric([solved, efficiency, num_guesses], [1.0, efficiency_weight, 0.0])

    def dataset(self) -> list[Example]:
        return self._train

    def eval_dataset(self) -> list[Example]:
        return self._eval

    def is_done(self, messages: list[dict], state: dict) -> bool:
        return parse_guess(messages[-1]["content"] or "") == int(state["example"].answer)

    def env_response(self, messages: list[dict], state: dict) -> list[dict]:
        guess = parse_guess(messages[-1]["content"] or "")
        if guess is None:
            text = "That is not a number. Reply with only your guess between <answer> and </answer> tags."
        else:
            text = "Higher." if guess < int(state["example"].answer) else "Lower."
        return [{"role": "user", "content": text}]


def load_environment(
    num_train_examples: int = 1000,
    num_eval_examples: int = 100,
    seed: int = 0,
    high: int = 10,
    max_turns: int = 4,
    efficiency_weight: float = 0.0,
) -> GuessNumberEnv:
    train = make_examples(num_train_examples, seed, high)
    evaluation = make_examples(num_eval_examples, seed + 1, high)
    return GuessNumberEnv(train, evaluation, max_turns, efficiency_weight)
