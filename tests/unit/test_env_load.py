"""load_environment (built-ins, user modules, .py files, errors) and dataset determinism of the built-ins."""

from __future__ import annotations

import pytest

from prime_rl.environments import BUILTINS, Environment, load_environment
from prime_rl.utils.config import ConfigError

USER_ENV = """
from prime_rl.environments import Example, Rubric, SingleTurnEnv

def brevity(completion) -> float:
    return 1.0 / (1 + len(completion[-1]["content"]))

def load_environment(num_examples: int = 4):
    examples = [Example(i, [{"role": "user", "content": f"Say {i}"}], answer=str(i)) for i in range(num_examples)]
    return SingleTurnEnv("my-env", examples, Rubric([brevity]))
"""


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_datasets_are_deterministic_with_unique_ids(name):
    env = load_environment(name, num_train_examples=50, num_eval_examples=20)
    again = load_environment(name, num_train_examples=50, num_eval_examples=20)
    assert isinstance(env, Environment) and env.name == name
    assert env.dataset() == again.dataset() and env.eval_dataset() == again.eval_dataset()
    for split, size in ((env.dataset(), 50), (env.eval_dataset(), 20)):
        assert sorted(ex.example_id for ex in split) == list(range(size))
        assert all(ex.prompt[-1]["role"] == "user" and ex.answer for ex in split)
    other = load_environment(name, num_train_examples=50, seed=1)
    assert other.dataset() != env.dataset()


def test_builtin_names_accept_underscores():
    assert load_environment("reverse_text", num_train_examples=3).name == "reverse-text"


def test_reverse_text_answer_is_the_reversed_phrase():
    example = load_environment("reverse-text", num_train_examples=1).dataset()[0]
    text = example.info["text"]
    assert example.answer == text[::-1]
    assert f"'{text}'" in example.prompt[0]["content"]


def test_one_word_eval_questions_are_held_out():
    env = load_environment("one-word", num_train_examples=300, num_eval_examples=50)
    train = {ex.prompt[0]["content"].split("?")[0] for ex in env.dataset()}
    evaluation = {ex.prompt[0]["content"].split("?")[0] for ex in env.eval_dataset()}
    assert train and evaluation and not train & evaluation


def test_load_user_module_by_import_path(write_module):
    write_module("my_env", USER_ENV)
    env = load_environment("my_env", num_examples=2)
    assert env.name == "my-env" and [ex.answer for ex in env.dataset()] == ["0", "1"]
    assert load_environment("my-env").dataset()[3].answer == "3"  # dashes map to underscores, like verifiers


def test_load_user_file_path(tmp_path):
    path = tmp_path / "envs" / "custom.py"
    path.parent.mkdir()
    path.write_text(USER_ENV)
    assert len(load_environment(str(path), num_examples=3).dataset()) == 3


def test_unknown_environment_lists_builtins():
    with pytest.raises(
        ConfigError, match=r"`no-such-env` is not a built-in \(reverse-text, one-word, guess-number, calculator\)"
    ):
        load_environment("no-such-env")


def test_bad_arguments_name_the_factory():
    with pytest.raises(ConfigError, match=r"prime_rl.environments.one_word.load_environment.*num_exampels"):
        load_environment("one-word", num_exampels=3)


def test_module_with_broken_import_or_no_factory(tmp_path, write_module):
    write_module("broken_env", "import not_installed_dependency_xyz\n")
    write_module("plain_module", "X = 1\n")
    write_module("wrong_env", "def load_environment():\n    return 42\n")
    with pytest.raises(ConfigError, match=r"importing module `broken_env` failed: No module named 'not_installed"):
        load_environment("broken_env")
    with pytest.raises(ConfigError, match=r"module `plain_module` has no load_environment\(\)"):
        load_environment("plain_module")
    with pytest.raises(ConfigError, match=r"load_environment\(\) returned int"):
        load_environment("wrong_env")
    with pytest.raises(ConfigError, match="file not found"):
        load_environment(str(tmp_path / "missing.py"))


def test_one_word_eval_on_training_questions_asks_each_once():
    env = load_environment("one-word", num_train_examples=300, eval_questions="train")
    train = {ex.prompt[0]["content"].split("?")[0] for ex in env.dataset()}
    evaluation = env.eval_dataset()
    assert len(evaluation) == 40 and {ex.prompt[0]["content"].split("?")[0] for ex in evaluation} == train
    assert evaluation[0].prompt[0]["content"].endswith("Answer with exactly one word.")
    assert evaluation[1].prompt[0]["content"].endswith("Reply in one word.")
    with pytest.raises(ValueError, match=r"one-word: eval_questions = 'test', expected 'held_out' or 'train'"):
        load_environment("one-word", eval_questions="test")


def test_reverse_text_strict_selects_the_strict_reward():
    assert [f.__name__ for f in load_environment("reverse-text", strict=True).rubric.funcs] == ["strict_lcs_reward"]
    assert [f.__name__ for f in load_environment("reverse-text").rubric.funcs] == ["lcs_reward"]


def test_reverse_text_reversal_weight_adds_the_reversal_reward():
    env = load_environment("reverse-text", strict=True, reversal_weight=0.0)
    assert [f.__name__ for f in env.rubric.funcs] == ["strict_lcs_reward", "strict_reversal_reward"]
    assert env.rubric.weights == [1.0, 0.0]
    env = load_environment("reverse-text", lcs_weight=0.0, reversal_weight=1.0)
    assert [f.__name__ for f in env.rubric.funcs] == ["lcs_reward", "reversal_reward"]
    assert env.rubric.weights == [0.0, 1.0]
    assert load_environment("reverse-text").rubric.weights == [1.0]
