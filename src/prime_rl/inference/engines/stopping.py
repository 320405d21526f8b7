"""When a sequence stops (a stop token, a stop string, its token budget) and the text it then reports."""

from __future__ import annotations

from typing import Any

from prime_rl.inference.engines.requests import Sequence


def check_finished(seq: Sequence, tokenizer: Any, stop_ids: set[int]) -> None:
    """Sets `finish_reason` and `text` of `seq` if its last token ended it; stop strings wait for `min_tokens`."""
    params = seq.request.params
    token = seq.token_ids[-1]
    if token in stop_ids:
        seq.finish_reason = "stop"
        seq.text = tokenizer.decode(seq.token_ids[:-1], skip_special_tokens=True)
        return
    if params.stop and len(seq.token_ids) >= params.min_tokens:
        text = tokenizer.decode(seq.token_ids, skip_special_tokens=True)
        hits = [i for s in params.stop if (i := text.find(s)) >= 0]
        if hits:
            seq.finish_reason, seq.text = "stop", text[: min(hits)]
            return
    if len(seq.token_ids) >= seq.request.max_new:
        seq.finish_reason = "length"
        seq.text = tokenizer.decode(seq.token_ids, skip_special_tokens=True)
