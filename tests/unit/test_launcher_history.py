"""The exactly-once check of a finished run's metrics names each kind of fault by step."""

import json

from prime_rl.launcher.history import History, read_history


def _history(tmp_path, trained, written, max_steps=4):
    (tmp_path / "metrics").mkdir(exist_ok=True)
    for name, records in (("trainer", trained), ("orchestrator", written)):
        lines = [json.dumps({"step": step, "batch/digest": digest}) for step, digest in records]
        (tmp_path / "metrics" / f"{name}.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return read_history(tmp_path, max_steps)


def test_read_history_names_lost_duplicated_unordered_and_mismatched_steps(tmp_path):
    once = [(0, "a"), (1, "b"), (2, "c"), (3, "d")]
    assert _history(tmp_path, once, once) == History(lost=[], duplicated=[], unordered=[], mismatched=[])
    assert _history(tmp_path, once[:2] + once[3:], once) == History([2], [], [], [2])
    assert _history(tmp_path, [*once[:3], (2, "c"), (3, "d")], once) == History([], [2], [2], [])
    assert _history(tmp_path, [*once[:3], (3, "a")], [*once[:3], (3, "a")]) == History([], [3], [], [])
    assert _history(tmp_path, once, [*once[:2], (2, "x"), (3, "d")]) == History([], [], [], [2])
    assert _history(tmp_path, once, [*once, (2, "c")]) == History([], [], [], [2])
    assert _history(tmp_path, [*once, (4, "e")], [*once, (4, "e")]) == History([], [], [4, 4], [])
