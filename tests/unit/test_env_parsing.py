"""Parsing rules and exact reward values of the built-in rubrics."""

from __future__ import annotations

import asyncio

import pytest

from prime_rl.environments import Example, Rollout, load_environment
from prime_rl.environments.guess_number import parse_guess
from prime_rl.environments.one_word import correct, correct_one_word, one_word
from prime_rl.environments.parsing import count_words, last_assistant_text, lcs_length, lcs_ratio, parse_answer
from prime_rl.environments.reverse_text import (
    lcs_reward,
    reversal_reward,
    reversal_score,
    strict_lcs_reward,
    strict_reversal_reward,
)


def reply(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>olleh</answer>", "olleh"),
        ("  <answer>\n olleh \n</answer> ", "olleh"),
        ("<ANSWER>abc</Answer>", "abc"),
        ("first <answer>a</answer> then <answer>b</answer>", "b"),
        ("<answer>truncated repl", "truncated repl"),
        ("<answer>a</answer> and <answer>unclosed", "a"),
        ("<answer></answer>", ""),
        ("no tags at all", None),
        ("", None),
        ("</answer>only closing", None),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


@pytest.mark.parametrize(
    ("a", "b", "length", "ratio"),
    [
        ("abc", "abc", 3, 1.0),
        ("abc", "xyz", 0, 0.0),
        ("abcde", "ace", 3, 0.75),
        ("olleh", "hello", 2, 0.4),  # "ll"
        ("dlrow", "dlrwo", 4, 0.8),
        ("", "", 0, 1.0),
        ("", "abc", 0, 0.0),
        ("AGGTAB", "GXTXAYB", 4, 8 / 13),
    ],
)
def test_lcs(a, b, length, ratio):
    assert lcs_length(a, b) == lcs_length(b, a) == length
    assert lcs_ratio(a, b) == pytest.approx(ratio, abs=1e-12)


def test_reverse_text_reward_values():
    assert lcs_reward(reply("<answer>olleh</answer>"), "olleh") == 1.0
    assert lcs_reward(reply("<answer>olleh</answer>"), "hello") == pytest.approx(0.4)
    assert lcs_reward(reply("olleh"), "olleh") == 0.0  # no tags, no credit
    assert lcs_reward(reply("<answer>oll"), "olleh") == pytest.approx(0.75)  # truncated: 2*3/8
    assert lcs_reward([], "olleh") == 0.0


def test_reverse_text_strict_reward_needs_one_closed_block_and_nothing_else():
    assert strict_lcs_reward(reply(" <answer> olleh </answer>\n"), "olleh") == 1.0
    assert strict_lcs_reward(reply("<ANSWER>olleh</ANSWER>"), "hello") == pytest.approx(0.4)
    assert strict_lcs_reward(reply("<answer>oll"), "olleh") == 0.0  # truncated
    assert strict_lcs_reward(reply("<answer>olleh</answer> done"), "olleh") == 0.0  # text after the block
    assert strict_lcs_reward(reply("Sure: <answer>olleh</answer>"), "olleh") == 0.0  # text before it
    assert strict_lcs_reward(reply("<answer>x</answer><answer>olleh</answer>"), "olleh") == 0.0  # two blocks
    assert strict_lcs_reward(reply("<answer>a<answer>olleh</answer>"), "olleh") == 0.0  # a nested opening tag
    assert strict_lcs_reward(reply("olleh"), "olleh") == 0.0
    assert strict_lcs_reward([], "olleh") == 0.0


@pytest.mark.parametrize(
    ("parsed", "answer", "score"),
    [
        ("olleh", "olleh", 1.0),
        ("olleh", "hello", 0.0),  # LCS ratio 0.4, below the chance floor: clipped
        ("abcde", "ace", 0.5),  # ratio 0.75
        ("dlrow", "dlrwo", 0.6),  # ratio 0.8
        ("ab", "abcd", 1 / 3),  # ratio 2/3
        ("", "", 1.0),
        ("", "abc", 0.0),
        ("eeffoc elcric", "eeffoc elcrix", 1 - 2 / 13),  # one wrong letter of 13: ratio 12/13
    ],
)
def test_reversal_score_rescales_the_lcs_ratio_above_the_chance_floor(parsed, answer, score):
    assert reversal_score(parsed, answer) == pytest.approx(score, abs=1e-12)


def test_reversal_rewards_parse_as_their_lcs_counterparts():
    assert reversal_reward(reply("<answer>olleh</answer>"), "olleh") == 1.0
    assert reversal_reward(reply("<answer>oll"), "olleh") == pytest.approx(0.5)  # truncated: ratio 0.75
    assert reversal_reward(reply("<answer>olleh</answer> done"), "olleh") == 1.0
    assert reversal_reward(reply("olleh"), "olleh") == 0.0
    assert strict_reversal_reward(reply(" <answer> dlrow </answer>\n"), "dlrwo") == pytest.approx(0.6)
    assert strict_reversal_reward(reply("<answer>olleh</answer> done"), "olleh") == 0.0
    assert strict_reversal_reward(reply("<answer>oll"), "olleh") == 0.0
    assert strict_reversal_reward([], "olleh") == 0.0


@pytest.mark.parametrize(
    ("text", "words", "reward"),
    [
        ("Paris", 1, 1.0),
        ("Paris.", 1, 1.0),
        ("**Paris**", 1, 1.0),
        ("It's Paris", 2, 0.5),
        ("The capital is Paris.", 4, 0.25),
        ("", 0, 0.0),
        ("...!", 0, 0.0),
        ("CO2", 1, 1.0),
    ],
)
def test_one_word_reward(text, words, reward):
    assert count_words(text) == words
    assert one_word(reply(text)) == reward


def test_one_word_correct_and_weighting():
    assert correct(reply("It is paris."), "Paris") == 1.0
    assert correct(reply("Lyon"), "Paris") == 0.0
    env = load_environment("one-word", correct_weight=0.5)
    example = Example(0, [{"role": "user", "content": "q"}], answer="Paris")
    rollout = Rollout(0, "one-word", example.prompt, reply("Paris is it"), [])
    reward, metrics = asyncio.run(env.rubric.score(rollout, example))
    assert metrics == {"one_word": 1 / 3, "correct": 1.0}
    assert reward == pytest.approx(1 / 3 + 0.5)
    mixed = load_environment("one-word", format_weight=0.5, correct_weight=0.5)
    assert asyncio.run(mixed.rubric.score(rollout, example))[0] == pytest.approx(0.5 / 3 + 0.5)


def test_one_word_correct_one_word_needs_both():
    assert correct_one_word(reply("Paris"), "Paris") == 1.0
    assert correct_one_word(reply("It is Paris."), "Paris") == 1 / 3
    assert correct_one_word(reply("Lyon"), "Paris") == 0.0
    env = load_environment("one-word", format_weight=0.0, correct_weight=1.0, correct_one_word_weight=1.0)
    example = Example(0, [{"role": "user", "content": "q"}], answer="Paris")
    rollout = Rollout(0, "one-word", example.prompt, reply("Paris is it"), [])
    reward, metrics = asyncio.run(env.rubric.score(rollout, example))
    assert metrics == {"one_word": 1 / 3, "correct": 1.0, "correct_one_word": 1 / 3}
    assert reward == pytest.approx(1 + 1 / 3)


@pytest.mark.parametrize(
    ("text", "guess"),
    [("<answer>7</answer>", 7), ("I guess 5", 5), ("<answer>my guess is 3</answer> not 4", 3), ("no idea", None)],
)
def test_parse_guess(text, guess):
    assert parse_guess(text) == guess


def test_last_assistant_text_skips_user_messages():
    completion = [{"role": "assistant", "content": "a"}, {"role": "user", "content": "Higher."}]
    assert last_assistant_text(completion) == "a"
    assert last_assistant_text([{"role": "assistant", "content": None}]) == ""
