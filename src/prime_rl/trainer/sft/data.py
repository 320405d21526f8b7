"""SFT data: conversations from JSONL, a `datasets` dataset or an environment, rendered with the chat template into
token ids and a loss mask that covers exactly the assistant tokens, then served as deterministic batches of
`TrainingSample`s.

A message's tokens are found by rendering the conversation prefix before it (with the generation prompt) and up to
it: the difference is the assistant reply. The mask keeps the reply up to and including its EOS token and drops
what the template appends after it (e.g. the newline after `<|im_end|>`), matching what the model samples in RL.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prime_rl.environments import load_environment
from prime_rl.trainer.sft.config import EnvironmentDataConfig, HFDataConfig, JSONLDataConfig, SFTDataConfigType
from prime_rl.transport.types import TrainingSample
from prime_rl.utils.hf_data import load_hf_rows


@dataclass
class Conversation:
    """Chat messages and which of them are trained on (assistant messages only)."""

    messages: list[dict]
    trained: list[bool]
    source: str
    """Where it came from (`file:line` or `env example N`), for error messages."""


def _messages(value: Any, role: str, where: str, key: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
        raise ValueError(f"{where}: `{key}` must be a string or a list of messages with a `role`")
    return value


def parse_record(record: Any, where: str) -> Conversation:
    """`{"messages": [...]}` trains on every assistant message; `{"prompt", "completion"}` on the completion's."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = _messages(record["messages"], "user", where, "messages")
        trained = [m["role"] == "assistant" for m in messages]
    elif "prompt" in record and "completion" in record:
        prompt = _messages(record["prompt"], "user", where, "prompt")
        completion = _messages(record["completion"], "assistant", where, "completion")
        messages = prompt + completion
        trained = [False] * len(prompt) + [m["role"] == "assistant" for m in completion]
    else:
        raise ValueError(f"{where}: needs `messages` or both `prompt` and `completion` (keys: {sorted(record)})")
    if not any(trained):
        raise ValueError(f"{where}: no assistant message to train on")
    return Conversation(messages, trained, where)


def load_jsonl(path: Path) -> list[Conversation]:
    conversations = []
    with Path(path).open() as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: invalid JSON: {e}") from None
            conversations.append(parse_record(record, f"{path}:{n}"))
    if not conversations:
        raise ValueError(f"{path}: no conversations")
    return conversations


def load_environment_data(config: EnvironmentDataConfig) -> list[Conversation]:
    """Prompts of the split, completed by `completion_format`, else `env.reference_completion`, else the answer."""
    env = load_environment(config.id, **config.args)
    examples = env.dataset() if config.split == "train" else env.eval_dataset()
    if not examples:
        raise ValueError(f"environment `{config.id}` has an empty {config.split} split")
    hook = getattr(env, "reference_completion", None)
    conversations = []
    for example in examples:
        where = f"environment `{config.id}` example {example.example_id}"
        reference = hook(example) if callable(hook) and config.completion_format is None else None
        if reference is not None:
            completion = _messages(reference, "assistant", where, "reference_completion")
        else:
            text = (config.completion_format or "{answer}").replace("{answer}", example.answer)
            completion = [{"role": "assistant", "content": text}]
        messages = list(example.prompt) + completion
        trained = [False] * len(example.prompt) + [m["role"] == "assistant" for m in completion]
        conversations.append(Conversation(messages, trained, where))
    return conversations


def hf_record(row: dict, config: HFDataConfig, where: str) -> dict:
    """A dataset row as a `parse_record` record: its messages column, else prompt + completion (or + answer)."""
    c = config
    if c.messages_column in row:
        return {"messages": row[c.messages_column]}
    if c.prompt_column in row and c.completion_column in row:
        return {"prompt": row[c.prompt_column], "completion": row[c.completion_column]}
    if c.prompt_column in row and c.answer_column in row:
        return {"prompt": row[c.prompt_column], "completion": str(row[c.answer_column])}
    raise ValueError(
        f"{where}: no column `{c.messages_column}`, nor `{c.prompt_column}` with `{c.completion_column}` or "
        f"`{c.answer_column}` (columns: {', '.join(row)}); map them with `data.messages_column`, "
        "`data.prompt_column`, `data.completion_column`, `data.answer_column`"
    )


def load_hf_data(config: HFDataConfig) -> list[Conversation]:
    rows = load_hf_rows(config.path, config.split, config.subset)[: config.max_examples]
    if not rows:
        raise ValueError(f"dataset `{config.path}` split `{config.split}` has no rows")
    conversations = []
    for i, row in enumerate(rows):
        where = f"dataset `{config.path}` row {i}"
        conversations.append(parse_record(hf_record(row, config, where), where))
    return conversations


def load_conversations(config: SFTDataConfigType) -> list[Conversation]:
    if isinstance(config, JSONLDataConfig):
        return load_jsonl(config.path)
    if isinstance(config, HFDataConfig):
        return load_hf_data(config)
    return load_environment_data(config)


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=False
    )
    return list(ids)


def tokenize_conversation(tokenizer: Any, conversation: Conversation) -> tuple[list[int], list[bool]]:
    """Token ids of the whole conversation and a mask that is True exactly on the trained assistant replies."""
    messages, where = conversation.messages, conversation.source
    ids = _render(tokenizer, messages, generation_prompt=False)
    mask = [False] * len(ids)
    eos = tokenizer.eos_token_id
    for i, trained in enumerate(conversation.trained):
        if not trained:
            continue
        if i == 0:
            raise ValueError(f"{where}: the conversation starts with an assistant message (no prompt to condition on)")
        start = _render(tokenizer, messages[:i], generation_prompt=True)
        end = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if end[: len(start)] != start or ids[: len(end)] != end:
            raise ValueError(
                f"{where}: the chat template does not render message {i} as an extension of the messages before it; "
                "its assistant tokens cannot be located"
            )
        span = list(range(len(start), len(end)))
        if eos is not None and eos in end[len(start) :]:
            last_eos = len(end) - 1 - end[::-1].index(eos)
            span = [t for t in span if t <= last_eos]
        for t in span:
            mask[t] = True
    return ids, mask


def to_sample(ids: list[int], mask: list[bool]) -> TrainingSample:
    """An SFT example in the trainer's sample format: everything is `completion`, the mask marks the targets."""
    n = len(ids)
    return TrainingSample(
        prompt_ids=[],
        completion_ids=ids,
        completion_mask=mask,
        completion_logprobs=[0.0] * n,
        completion_temperatures=[1.0] * n,
        advantage=0.0,
        reward=0.0,
        policy_step=0,
    )


class SFTDataset:
    """Tokenized conversations served `batch_size` at a time; step N's batch depends only on (seed, N), so a resumed
    run sees exactly the batches an uninterrupted one would."""

    def __init__(self, samples: list[TrainingSample], batch_size: int, seed: int, shuffle: bool = True):
        if not samples:
            raise ValueError("SFT dataset is empty")
        self.samples, self.batch_size, self.seed, self.shuffle = samples, batch_size, seed, shuffle
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(len(self.samples)))
            if self.shuffle:
                random.Random(f"{self.seed}-{epoch}").shuffle(order)
            # Only the current and the previous epoch are kept: a batch spans at most one epoch boundary.
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1} | {epoch: order}
        return self._orders[epoch]

    def indices(self, step: int) -> list[int]:
        """Dataset indices of step `step`'s batch (the position `step * batch_size` onwards, across epochs)."""
        n = len(self.samples)
        positions = range(step * self.batch_size, (step + 1) * self.batch_size)
        return [self._order(p // n)[p % n] for p in positions]

    def get_batch(self, step: int) -> list[TrainingSample]:
        return [self.samples[i] for i in self.indices(step)]


def setup_dataset(config: SFTDataConfigType, tokenizer: Any, batch_size: int, seed: int, shuffle: bool) -> SFTDataset:
    samples = [to_sample(*tokenize_conversation(tokenizer, c)) for c in load_conversations(config)]
    return SFTDataset(samples, batch_size, seed, shuffle)
