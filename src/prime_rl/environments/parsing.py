"""Parsing and string metrics shared by the built-in rubrics. None of these raise on any string input."""

from __future__ import annotations

import re

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_OPEN_RE = re.compile(r"<answer>", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z0-9']+")


def last_assistant_text(completion: list[dict]) -> str:
    """Content of the last assistant message of a completion ("" when there is none)."""
    for message in reversed(completion):
        if message.get("role") == "assistant":
            return message.get("content") or ""
    return ""


def parse_answer(text: str) -> str | None:
    """The answer inside `<answer>...</answer>` tags, stripped of surrounding whitespace.

    Rules: tags are case-insensitive; with several closed pairs the LAST one wins (models often restate the task
    first); an opening tag that is never closed (a truncated reply) yields everything after the last `<answer>`;
    no opening tag at all yields None.
    """
    closed = _ANSWER_RE.findall(text)
    if closed:
        return closed[-1].strip()
    opens = list(_OPEN_RE.finditer(text))
    if opens:
        return text[opens[-1].end() :].strip()
    return None


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings (O(len(a) * len(b)) dynamic programme)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for ca in a:
        prev_diag = 0
        for j, cb in enumerate(b, start=1):
            prev_diag, row[j] = row[j], prev_diag + 1 if ca == cb else max(row[j], row[j - 1])
    return row[-1]


def lcs_ratio(a: str, b: str) -> float:
    """`2 * LCS(a, b) / (len(a) + len(b))`: 1.0 for equal strings, 0.0 with nothing in common (two empties give 1.0)."""
    if not a and not b:
        return 1.0
    return 2 * lcs_length(a, b) / (len(a) + len(b))


def count_words(text: str) -> int:
    """Number of words, a word being a run of `[A-Za-z0-9']` (so punctuation and markup do not count)."""
    return len(_WORD_RE.findall(text))
