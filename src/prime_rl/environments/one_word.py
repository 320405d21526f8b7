"""`one-word`: answer a simple factual question with exactly one word.

Reward `one_word`: `1 / number of words` of the last reply (words are runs of `[A-Za-z0-9']`), 0 for an empty
reply, so 1.0 iff exactly one word. `correct` (1.0 if the expected word appears in the reply, case-insensitive)
is logged as a metric; `correct_one_word = correct * one_word` needs both (logged when weighted). The reward is
`format_weight * one_word + correct_weight * correct + correct_one_word_weight * correct_one_word` (defaults 1, 0,
0: format only, as in the reference TRL run). Questions are split into disjoint train and held-out sets; the eval
split asks the held-out questions, or with `eval_questions = "train"` each training question once.
"""

from __future__ import annotations

import random
from typing import Literal

from prime_rl.environments.parsing import count_words, last_assistant_text
from prime_rl.environments.rubric import Rubric
from prime_rl.environments.single_turn import SingleTurnEnv
from prime_rl.environments.types import Example

QUESTIONS = (
    ("What is the capital of France?", "Paris"),
    ("What color is the sky on a clear day?", "blue"),
    ("What is the largest planet in our solar system?", "Jupiter"),
    ("What do bees make?", "honey"),
    ("What is frozen water called?", "ice"),
    ("Which animal is known as the king of the jungle?", "lion"),
    ("What is the capital of Japan?", "Tokyo"),
    ("How many legs does a spider have?", "eight"),
    ("What gas do plants absorb from the air?", "CO2"),
    ("What is the opposite of hot?", "cold"),
    ("Which planet is known as the red planet?", "Mars"),
    ("What is the capital of Italy?", "Rome"),
    ("What color are ripe bananas?", "yellow"),
    ("What do cows drink?", "water"),
    ("What is the closest star to Earth?", "Sun"),
    ("Which ocean is the largest?", "Pacific"),
    ("What is the main language spoken in Brazil?", "Portuguese"),
    ("What is the capital of Germany?", "Berlin"),
    ("Which metal is liquid at room temperature?", "mercury"),
    ("What do you call a baby cat?", "kitten"),
    ("What is the chemical symbol for gold?", "Au"),
    ("Which continent is Egypt in?", "Africa"),
    ("What is the capital of Spain?", "Madrid"),
    ("What season comes after winter?", "spring"),
    ("What instrument has 88 keys?", "piano"),
    ("What is the largest mammal on Earth?", "whale"),
    ("Which bird is a symbol of peace?", "dove"),
    ("What is the capital of Canada?", "Ottawa"),
    ("What fruit keeps the doctor away?", "apple"),
    ("How many days are in a week?", "seven"),
    ("What is the hardest natural substance?", "diamond"),
    ("Which organ pumps blood through the body?", "heart"),
    ("What is the capital of Russia?", "Moscow"),
    ("What do caterpillars turn into?", "butterflies"),
    ("What color is grass?", "green"),
    ("Which language has the most native speakers?", "Mandarin"),
    ("What is the capital of Egypt?", "Cairo"),
    ("What is the boiling point of water in Celsius?", "100"),
    ("Which animal has a long trunk?", "elephant"),
    ("What is the opposite of up?", "down"),
    ("What is the capital of Australia?", "Canberra"),
    ("What do you use to write on a blackboard?", "chalk"),
    ("Which planet has famous rings?", "Saturn"),
    ("What is the primary ingredient of bread?", "flour"),
    ("What is the capital of China?", "Beijing"),
    ("Which month has the fewest days?", "February"),
    ("What is the fastest land animal?", "cheetah"),
    ("What is the color of snow?", "white"),
)
INSTRUCTIONS = ("Answer with exactly one word.", "Reply in one word.", "Use a single word.")
NUM_EVAL_QUESTIONS = 8


def make_examples(questions: list[tuple[str, str]], num_examples: int, seed: int) -> list[Example]:
    """`num_examples` (question, instruction) draws from `random.Random(seed)`."""
    rng = random.Random(seed)
    examples = []
    for i in range(num_examples):
        question, answer = rng.choice(questions)
        content = f"{question} {rng.choice(INSTRUCTIONS)}"
        examples.append(Example(i, [{"role": "user", "content": content}], answer=answer))
    return examples


def one_word(completion: list[dict]) -> float:
    """`1 / number of words` of the last reply, 0 for a reply without words."""
    words = count_words(last_assistant_text(completion))
    return 0.0 if words == 0 else 1.0 / words


def correct(completion: list[dict], answer: str) -> float:
    """1.0 if the expected answer appears (case-insensitive) in the last reply."""
    return float(answer.lower() in last_assistant_text(completion).lower())


def correct_one_word(completion: list[dict], answer: str) -> float:
    """`correct * one_word`: 1.0 only for the expected answer alone; a correct sentence of n words gets 1/n."""
    return correct(completion, answer) * one_word(completion)


def each_question_once(questions: list[tuple[str, str]]) -> list[Example]:
    """One example per question, the instructions taken in turn (a fixed eval set over exactly these questions)."""
    return [
        Example(i, [{"role": "user", "content": f"{q} {INSTRUCTIONS[i % len(INSTRUCTIONS)]}"}], answer=a)
        for i, (q, a) in enumerate(questions)
    ]


def load_environment(
    num_train_examples: int = 1000,
    num_eval_examples: int = 64,
    seed: int = 0,
    correct_weight: float = 0.0,
    format_weight: float = 1.0,
    correct_one_word_weight: float = 0.0,
    eval_questions: Literal["held_out", "train"] = "held_out",
) -> SingleTurnEnv:
    questions = list(QUESTIONS)
    random.Random(seed).shuffle(questions)
    held_out, train_questions = questions[:NUM_EVAL_QUESTIONS], questions[NUM_EVAL_QUESTIONS:]
    train = make_examples(train_questions, num_train_examples, seed)
    if eval_questions == "train":
        evaluation = each_question_once(train_questions)
    elif eval_questions == "held_out":
        evaluation = make_examples(held_out, num_eval_examples, seed + 1)
    else:
        raise ValueError(f"one-word: eval_questions = {eval_questions!r}, expected 'held_out' or 'train'")
    funcs, weights = [one_word, correct], [format_weight, correct_weight]
    if correct_one_word_weight:
        funcs, weights = [*funcs, correct_one_word], [*weights, correct_one_word_weight]
    return SingleTurnEnv("one-word", train, Rubric(funcs, weights), evaluation)
