"""Request and weight-path checks of the inference server, without a model: exact messages and the `param` named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prime_rl.inference.engines.base import EngineError, SamplingParams, check_request
from prime_rl.inference.json_body import MAX_JSON_DEPTH, decode_json
from prime_rl.inference.protocol import parse_request
from prime_rl.inference.weight_paths import resolve_weight_dir, weight_files


def refusal(fn, *args, **kwargs) -> EngineError:
    with pytest.raises(EngineError) as info:
        fn(*args, **kwargs)
    return info.value


def test_json_depth_and_surrogates_name_the_path():
    assert decode_json(b'{"a": [[1]]}') == {"a": [[1]]}
    error = refusal(decode_json, b"[" * 100_000 + b"]" * 100_000)
    assert (error.message, error.param) == (f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep", None)
    nested = refusal(decode_json, b'{"m": ' + b"[" * 70 + b"]" * 70 + b"}")
    assert nested.param == "m" + ".0" * (MAX_JSON_DEPTH - 1)
    value = refusal(decode_json, b'{"model": "\\ud800"}')
    assert (value.param, value.message) == (
        "model",
        "the value of `model` holds a lone UTF-16 surrogate (invalid Unicode)",
    )
    key = refusal(decode_json, b'{"messages": [{"\\udfff": 1}]}')
    assert key.param == "messages.0.\\udfff"
    key.message.encode("utf-8")  # the error body stays encodable
    assert refusal(decode_json, b"{not json").message.startswith("malformed JSON body: ")


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("max_tokens", "10", "max_tokens"),
        ("max_tokens", True, "max_tokens"),
        ("max_tokens", 1e30, "max_tokens"),
        ("max_tokens", 2**63, "max_tokens"),
        ("logprobs", "yes", "logprobs"),
        ("temperature", float("inf"), "temperature"),
        ("temperature", 1e-40, "temperature"),
        ("temperature", 101.0, "temperature"),
        ("seed", -(2**63) - 1, "seed"),
        ("top_k", 2**63, "top_k"),
        ("top_k", -2, "top_k"),
        ("n", 0, "n"),
        ("n", 2**63, "n"),
        ("min_tokens", -1, "min_tokens"),
        ("max_tokens", 0, "max_tokens"),
        ("tokens", [0, -1], "tokens.1"),
        ("messages", [{"role": "robot", "content": "x"}], "messages.0.role"),
        ("messages", [{"content": "x"}], "messages.0.role"),
        ("messages", [{"role": "user", "content": 3}], "messages.0.content"),
        ("stop", [1], "stop.0"),
        ("stop", ["a", 2], "stop.1"),
    ],
)
def test_strict_types_and_ranges(field: str, value, param: str):
    body = {"messages": [{"role": "user", "content": "hi"}], field: value}
    assert refusal(parse_request, body).param == param


def test_accepted_edges():
    body = {"temperature": 0, "seed": -(2**63), "top_k": -1, "messages": [{"role": "tool", "content": None}]}
    request = parse_request(body)
    assert (request.temperature, request.seed, request.sampling_params().top_k) == (0.0, -(2**63), 0)
    assert parse_request({"temperature": 1e-3, "n": 2}).temperature == 1e-3


@pytest.mark.parametrize(("top_k", "expected"), [(-1, 0), (0, 0), (1, 1), (50, 50)])
def test_top_k_reaches_the_engines_as_0_when_off(top_k: int, expected: int):
    """Neither engine clamps `top_k` again: the request maps the API's -1 (off) to 0."""
    assert parse_request({"top_k": top_k}).sampling_params().top_k == expected


def test_check_request_bounds_by_model():
    def check(prompt: list[int], **params) -> int:
        return check_request(prompt, SamplingParams(**params), max_model_len=16, vocab_size=100, max_batch_size=4)

    assert check([1, 2, 3]) == 13 and check([1, 2, 3], max_tokens=16) == 13 and check([1], top_k=100) == 15
    cases = [
        ({"max_tokens": 17}, "max_tokens", "`max_tokens` (17) exceeds the model's context of 16 tokens"),
        ({"min_tokens": 17}, "min_tokens", "`min_tokens` (17) exceeds the model's context of 16 tokens"),
        ({"top_k": 101}, "top_k", "`top_k` (101) exceeds the vocabulary size 100"),
        ({"n": 5}, "n", "n=5 is not in [1, max_batch_size=4]"),
        ({"n": 0}, "n", "n=0 is not in [1, max_batch_size=4]"),
    ]
    for params, param, message in cases:
        error = refusal(check, [1], **params)
        assert (error.param, error.message) == (param, message)
    assert refusal(check, [1, 100]).param == "tokens"


def test_weight_paths_refuse_escapes_and_special_files(tmp_path: Path):
    root = (tmp_path / "out").resolve()
    (root / "step_1").mkdir(parents=True)
    (root / "step_1" / "model.safetensors").write_bytes(b"x")
    assert weight_files(resolve_weight_dir(str(root / "step_1"), root), root) == [root / "step_1/model.safetensors"]
    (root / "loop").symlink_to(root / "loop")
    assert "Symlink loop" in refusal(resolve_weight_dir, str(root / "loop" / "a"), root).message
    assert refusal(resolve_weight_dir, str(root / "a\x00b"), root).message == "`weight_dir` contains a NUL byte"
    assert refusal(resolve_weight_dir, "/" + "a" * 5000, root).message.endswith("(at most 4096)")
    assert refusal(resolve_weight_dir, str(tmp_path), root).status == 403
    (root / "step_2").mkdir()
    os.mkfifo(root / "step_2" / "model.safetensors")
    fifo = refusal(weight_files, root / "step_2", root)
    assert (fifo.status, fifo.message) == (400, f"`{root}/step_2/model.safetensors` is not a regular file")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    (root / "step_3").mkdir()
    (root / "step_3" / "model.safetensors").symlink_to(tmp_path / "secret.safetensors")
    leak = refusal(weight_files, root / "step_3", root)
    assert leak.status == 403 and "outside the output directory" in leak.message
    assert refusal(weight_files, root / "missing", root).status == 404
