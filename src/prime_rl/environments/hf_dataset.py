"""`dataset`: a single-turn environment over any Hugging Face `datasets` data (`utils/hf_data.py`: a `save_to_disk`
directory, local json/jsonl/parquet/arrow/csv files, or a hub id) with a prompt and an answer column.

Reward `correct`: 1.0 when the reply matches the answer (both stripped, case-insensitive): `match = "exact"` (the
whole reply, or with `answer_tag` the text inside its last `<answer>...</answer>`) or `"contains"` (the answer occurs
in it). Rows become examples in dataset order; columns other than the prompt and answer go to `info`.
"""

from __future__ import annotations

from typing import Literal

from prime_rl.environments.parsing import last_assistant_text, parse_answer
from prime_rl.environments.rubric import Rubric
from prime_rl.environments.single_turn import SingleTurnEnv
from prime_rl.environments.types import Example
from prime_rl.utils.hf_data import column, load_hf_rows


def to_prompt(value: object, source: str, index: int, system_prompt: str | None) -> list[dict]:
    """A prompt cell (a string: one user message; or a list of messages) as chat messages."""
    if isinstance(value, str):
        messages = [{"role": "user", "content": value}]
    elif isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        messages = list(value)
    else:
        raise ValueError(f"dataset `{source}` row {index}: the prompt must be a string or a list of messages")
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages


def make_examples(
    source: str, split: str, subset: str | None, prompt_column: str, answer_column: str, system_prompt: str | None,
    max_examples: int | None,
) -> list[Example]:  # fmt: skip
    rows = load_hf_rows(source, split, subset)[:max_examples]
    if not rows:
        raise ValueError(f"dataset `{source}` split `{split}` has no rows")
    examples = []
    for i, row in enumerate(rows):
        prompt = to_prompt(column(row, prompt_column, source, i), source, i, system_prompt)
        answer = str(column(row, answer_column, source, i))
        info = {k: v for k, v in row.items() if k not in (prompt_column, answer_column)}
        examples.append(Example(example_id=i, prompt=prompt, answer=answer, info=info))
    return examples


def correct_fn(match: Literal["exact", "contains"], answer_tag: bool):
    def correct(completion: list[dict], answer: str) -> float:
        """1.0 when the reply (or its tagged answer) matches the expected answer, case-insensitively."""
        reply = last_assistant_text(completion)
        if answer_tag:
            reply = parse_answer(reply)
            if reply is None:
                return 0.0
        reply, expected = reply.strip().casefold(), answer.strip().casefold()
        return float(reply == expected if match == "exact" else expected in reply)

    return correct


def load_environment(
    path: str,
    split: str = "train",
    eval_split: str | None = None,
    subset: str | None = None,
    prompt_column: str = "prompt",
    answer_column: str = "answer",
    system_prompt: str | None = None,
    match: Literal["exact", "contains"] = "exact",
    answer_tag: bool = False,
    max_examples: int | None = None,
    name: str = "dataset",
) -> SingleTurnEnv:
    """`path`: see the module docstring; `eval_split` (None: no eval split) is read like `split`."""
    if match not in ("exact", "contains"):
        raise ValueError(f"`match` = {match!r}: expected 'exact' or 'contains'")
    columns = (prompt_column, answer_column, system_prompt, max_examples)
    train = make_examples(path, split, subset, *columns)
    evaluation = make_examples(path, eval_split, subset, *columns) if eval_split else []
    reference = "<answer>{answer}</answer>" if answer_tag else "{answer}"
    return SingleTurnEnv(name, train, Rubric([correct_fn(match, answer_tag)]), evaluation, reference)
