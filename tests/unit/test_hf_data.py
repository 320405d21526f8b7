"""Hugging Face `datasets` data: parquet, jsonl, arrow files and `save_to_disk` directories written by the tests, read
by SFT (columns mapped to messages / prompt + completion / prompt + answer) and by the `dataset` environment."""

import asyncio

import datasets
import pytest

from prime_rl.environments import Example, Rollout, load_environment
from prime_rl.trainer.sft.config import HFDataConfig
from prime_rl.trainer.sft.data import load_conversations
from prime_rl.utils.hf_data import load_hf_rows

ROWS = [
    {"question": "2+2?", "solution": "4", "level": 1},
    {"question": "Capital of France?", "solution": "Paris", "level": 2},
]


@pytest.fixture
def files(tmp_path):
    """The same rows as parquet, jsonl, a single .arrow file, a saved Dataset and a saved DatasetDict (train/test)."""
    data = datasets.Dataset.from_list(ROWS)
    data.to_parquet(str(tmp_path / "qa.parquet"))
    data.to_json(str(tmp_path / "qa.jsonl"))
    data.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": data, "test": data.select([1])}).save_to_disk(str(tmp_path / "saved_dict"))
    (arrow,) = (tmp_path / "saved").glob("*.arrow")
    return {
        "parquet": tmp_path / "qa.parquet",
        "jsonl": tmp_path / "qa.jsonl",
        "arrow": arrow,
        "saved": tmp_path / "saved",
        "saved_dict": tmp_path / "saved_dict",
    }


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "arrow", "saved", "saved_dict"])
def test_every_local_format_gives_the_same_rows(files, kind):
    assert load_hf_rows(str(files[kind])) == ROWS


def test_splits_of_a_saved_dataset_dict(files):
    assert load_hf_rows(str(files["saved_dict"]), split="test") == ROWS[1:]
    with pytest.raises(ValueError, match=r"^dataset `.*saved_dict` has no split `eval` \(splits: train, test\)$"):
        load_hf_rows(str(files["saved_dict"]), split="eval")


def test_missing_local_path_is_not_looked_up_on_the_hub(tmp_path):
    with pytest.raises(ValueError, match=r"^dataset `.*nope\.parquet` not found \(no such file or directory\)$"):
        load_hf_rows(str(tmp_path / "nope.parquet"))
    with pytest.raises(ValueError, match=r"unknown file type `\.txt`"):
        (tmp_path / "a.txt").write_text("x")
        load_hf_rows(str(tmp_path / "a.txt"))


def test_hub_id_without_the_hub_says_so(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as e:
        load_hf_rows("some-org/some-dataset", split="train")
    message = str(e.value)
    assert message.startswith(
        "dataset `some-org/some-dataset` is not a local path, and the Hugging Face Hub could not be reached"
    )
    assert message.endswith("download it where the Hub is reachable (`load_dataset(...).save_to_disk(dir)`) and give "
                            "that directory")  # fmt: skip


def test_sft_prompt_and_answer_columns(files):
    config = HFDataConfig(path=str(files["parquet"]), prompt_column="question", answer_column="solution")
    conversations = load_conversations(config)
    assert [c.messages for c in conversations] == [
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}],
    ]
    assert [c.trained for c in conversations] == [[False, True], [False, True]]
    assert conversations[1].source == f"dataset `{files['parquet']}` row 1"


def test_sft_messages_and_prompt_completion_formats(tmp_path):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    datasets.Dataset.from_list([{"chat": messages}]).save_to_disk(str(tmp_path / "chat"))
    (chat,) = load_conversations(HFDataConfig(path=str(tmp_path / "chat"), messages_column="chat"))
    assert (chat.messages, chat.trained) == (messages, [False, True])
    record = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}
    datasets.Dataset.from_list([record]).to_parquet(str(tmp_path / "pc.parquet"))
    (pc,) = load_conversations(HFDataConfig(path=str(tmp_path / "pc.parquet")))
    assert (pc.messages, pc.trained) == (record["prompt"] + record["completion"], [False, True])


def test_sft_unmapped_columns_name_the_keys(files):
    with pytest.raises(ValueError) as e:
        load_conversations(HFDataConfig(path=str(files["jsonl"]), max_examples=1))
    assert str(e.value) == (
        f"dataset `{files['jsonl']}` row 0: no column `messages`, nor `prompt` with `completion` or `answer` "
        "(columns: question, solution, level); map them with `data.messages_column`, `data.prompt_column`, "
        "`data.completion_column`, `data.answer_column`"
    )


def _score(env, example: Example, reply: str) -> float:
    completion = [{"role": "assistant", "content": reply}]
    rollout = Rollout(example.example_id, env.name, example.prompt, completion, [])
    return asyncio.run(env.rubric.score(rollout, example))[0]


def test_dataset_environment_reads_columns_and_scores_answers(files):
    env = load_environment(
        "dataset", path=str(files["saved_dict"]), eval_split="test", prompt_column="question",
        answer_column="solution", system_prompt="Be brief.", answer_tag=True,
    )  # fmt: skip
    train, evaluation = env.dataset(), env.eval_dataset()
    assert train[1] == Example(
        1,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        "Paris",
        {"level": 2},
    )
    assert [e.answer for e in evaluation] == ["Paris"]
    assert env.reference_completion(train[0]) == [{"role": "assistant", "content": "<answer>4</answer>"}]
    assert [_score(env, train[1], r) for r in ("<answer> paris </answer>", "Paris", "<answer>Rome</answer>")] == [
        1.0, 0.0, 0.0,
    ]  # fmt: skip
    contains = load_environment(
        "dataset", path=str(files["parquet"]), prompt_column="question", answer_column="solution", match="contains"
    )
    assert [_score(contains, contains.dataset()[0], r) for r in ("It is 4.", "It is five.")] == [1.0, 0.0]


def test_dataset_environment_missing_column(files):
    with pytest.raises(ValueError, match=r"row 0: no column `prompt` \(columns: question, solution, level\)$"):
        load_environment("dataset", path=str(files["parquet"]))
