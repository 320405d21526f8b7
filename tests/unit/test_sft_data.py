"""SFT data: JSONL/environment conversations, the assistant-token loss mask, deterministic resumable batches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from prime_rl.environments import load_environment
from prime_rl.environments.types import Rollout
from prime_rl.trainer.sft.config import EnvironmentDataConfig, SFTConfig
from prime_rl.trainer.sft.data import (
    Conversation,
    SFTDataset,
    load_environment_data,
    load_jsonl,
    parse_record,
    to_sample,
    tokenize_conversation,
)
from prime_rl.utils.config import ConfigError, parse_config
from prime_rl.utils.models import resolve_model_path


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))


def masked_positions(mask: list[bool]) -> list[int]:
    return [i for i, m in enumerate(mask) if m]


def test_mask_is_exactly_the_assistant_reply_and_its_eos(tokenizer):
    conversation = parse_record(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo there"}]}, "x"
    )
    ids, mask = tokenize_conversation(tokenizer, conversation)
    assert len(ids) == 35
    assert masked_positions(mask) == [31, 32, 33]
    assert ids[31:34] == [31041, 665, 2]
    assert tokenizer.decode(ids[31:34]) == "yo there<|im_end|>"
    assert tokenizer.decode(ids[28:31]) == "assistant\n"  # the generation prompt is not trained on
    assert tokenizer.decode(ids[34:]) == "\n"  # the template's newline after <|im_end|> is not either


def test_messages_train_every_assistant_turn_prompt_completion_only_the_completion(tokenizer):
    turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    ids, mask = tokenize_conversation(tokenizer, parse_record({"messages": turns}, "x"))
    spans = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert spans == "b<|im_end|>d<|im_end|>"

    record = {"prompt": turns[:3], "completion": [turns[3]]}
    ids2, mask2 = tokenize_conversation(tokenizer, parse_record(record, "x"))
    assert ids2 == ids
    assert tokenizer.decode([i for i, m in zip(ids2, mask2, strict=True) if m]) == "d<|im_end|>"

    strings = parse_record({"prompt": "a", "completion": "b"}, "x")
    assert strings.messages == turns[:2] and strings.trained == [False, True]


def test_bad_records_name_file_and_line(tmp_path: Path, tokenizer):
    path = tmp_path / "data.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n\n{"text": 1}\n'
    )
    with pytest.raises(
        ValueError, match=r"data.jsonl:3: needs `messages` or both `prompt` and `completion` \(keys: \['text'\]\)"
    ):
        load_jsonl(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"data.jsonl:1: invalid JSON"):
        load_jsonl(path)
    with pytest.raises(ValueError, match="x: no assistant message to train on"):
        parse_record({"messages": [{"role": "user", "content": "a"}]}, "x")
    with pytest.raises(ValueError, match="x: `completion` must be a string or a list of messages"):
        parse_record({"prompt": "a", "completion": [{"content": "b"}]}, "x")
    first = Conversation([{"role": "assistant", "content": "b"}], [True], "y")
    with pytest.raises(ValueError, match="y: the conversation starts with an assistant message"):
        tokenize_conversation(tokenizer, first)


def test_environment_data_completes_prompts_with_the_formatted_answer(tokenizer):
    config = EnvironmentDataConfig(args={"num_train_examples": 4}, completion_format="<answer>{answer}</answer>")
    conversations = load_environment_data(config)
    env = load_environment("reverse-text", num_train_examples=4)
    assert len(conversations) == 4
    for conversation, example in zip(conversations, env.dataset(), strict=True):
        assert conversation.messages[:-1] == example.prompt
        assert conversation.messages[-1] == {"role": "assistant", "content": f"<answer>{example.answer}</answer>"}
        rollout = Rollout(example.example_id, "reverse-text", example.prompt, conversation.messages[-1:], [])
        assert asyncio.run(env.rubric.score(rollout, example))[0] == 1.0  # the reference earns full reward
    hooked = load_environment_data(EnvironmentDataConfig(args={"num_train_examples": 4}))
    assert [c.messages for c in hooked] == [c.messages for c in conversations]  # reverse-text's own reference
    plain = load_environment_data(EnvironmentDataConfig(id="one-word", completion_format="{answer}"))
    assert plain[0].messages[-1]["content"] == load_environment("one-word").dataset()[0].answer


def test_dataset_batches_depend_only_on_seed_and_step():
    samples = [to_sample([i, i + 1], [False, True]) for i in range(5)]
    data = SFTDataset(samples, batch_size=2, seed=3)
    seen = [i for step in range(5) for i in data.indices(step)]
    assert sorted(seen) == sorted(list(range(5)) * 2)  # two full epochs in 5 steps of 2
    assert sorted(seen[:5]) == list(range(5))
    resumed = SFTDataset(samples, batch_size=2, seed=3)
    assert [resumed.indices(s) for s in (4, 2, 3)] == [data.indices(s) for s in (4, 2, 3)]
    assert SFTDataset(samples, 2, seed=3, shuffle=False).indices(3) == [1, 2]
    assert data.get_batch(0)[0].completion_mask == [False, True]


def test_shipped_sft_configs_parse():
    paths = sorted((Path(__file__).parents[2] / "examples").glob("*/sft.toml"))
    assert paths
    for path in paths:
        config = parse_config(SFTConfig, ["@", str(path)])
        assert config.max_steps >= 1


def test_reverse_text_example_uses_the_answer_tags():
    path = Path(__file__).parents[2] / "examples" / "reverse_text" / "sft.toml"
    config = parse_config(SFTConfig, ["@", str(path)])
    assert config.data.id == "reverse-text" and config.data.completion_format is None
    reference = load_environment("reverse-text").reference_completion(load_environment("reverse-text").dataset()[0])
    assert reference[0]["content"].startswith("<answer>") and reference[0]["content"].endswith("</answer>")


def test_config_errors_name_the_key(tmp_path: Path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    config = parse_config(SFTConfig, ["--data.path", str(data), "--optim.lr", "0.01", "--max-steps", "3"])
    assert config.data.path == data and config.optim.lr == 0.01 and config.output_dir == Path("outputs/sft")
    with pytest.raises(ConfigError, match=r"`data`: Field required"):
        parse_config(SFTConfig, [])
    with pytest.raises(ConfigError, match=r"`data.path`: Field required"):
        parse_config(SFTConfig, ["--data.type", "default"])
    with pytest.raises(ConfigError, match=r"data file `.*missing.jsonl` not found"):
        parse_config(SFTConfig, ["--data.path", str(tmp_path / "missing.jsonl")])
    with pytest.raises(ConfigError, match=r"`data.completion_format`.*must contain `\{answer\}`"):
        parse_config(SFTConfig, ["--data.type", "environment", "--data.completion-format", "x"])
    with pytest.raises(ConfigError, match=r"warmup_steps \(5\) exceeds max_steps \(3\)"):
        parse_config(SFTConfig, ["--data.path", str(data), "--max-steps", "3", "--scheduler.warmup-steps", "5"])


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path: Path, capsys):
    from prime_rl.trainer.sft.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"text": 1}\n')
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["--data.path", str(data), "--output-dir", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sft: error: data: {data}:2: needs `messages` or both `prompt` and `completion` (keys: ['text'])"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["--data.path", str(data), "--output-dir", str(out), "--ckpt.resume-step", "-1"])
    assert exit_info.value.code == 2
    assert (
        "`ckpt.resume_step` = -1 but " in (err := capsys.readouterr().err)
        and "holds no complete trainer checkpoint" in err
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["--data.type", "environment", "--data.id", "no-such-env", "--output-dir", str(out)])
    assert exit_info.value.code == 2
    assert "sft: error: environment `no-such-env` is not a built-in" in capsys.readouterr().err
    assert not out.exists()
