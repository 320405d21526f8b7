"""One weight check for both engines (`engines/weights.py: check_tensor_files`): the HF engine's, against the loaded
model, and the vLLM engine's, against the model's skeleton from its config (file headers only), accept the same
directory and refuse the same faults with the same messages and statuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from prime_rl.inference.engines import vllm_weights
from prime_rl.inference.engines.base import EngineError
from prime_rl.inference.engines.weights import check_weight_dir
from prime_rl.weights.state import unique_state_dict
from prime_rl.weights.tensor_file import write_tensor_file

EMBED = "model.embed_tokens.weight"


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


@pytest.fixture(params=["hf", "vllm"])
def check(request, model: torch.nn.Module, tiny_model_dir: Path) -> Callable[[Path], None]:
    if request.param == "hf":
        return lambda weight_dir: check_weight_dir(weight_dir, model).close()
    table = vllm_weights.parameter_table(str(tiny_model_dir))
    return lambda weight_dir: vllm_weights.check_weight_dir(weight_dir, table)


def write(weight_dir: Path, tensors: dict[str, torch.Tensor]) -> Path:
    weight_dir.mkdir()
    write_tensor_file(tensors, weight_dir / "model.safetensors")
    return weight_dir


def test_the_trainers_broadcast_passes(check, model, tmp_path):
    tensors = unique_state_dict(model)
    assert "lm_head.weight" not in tensors  # tied to the embedding: absent from a broadcast
    check(write(tmp_path / "good", tensors))


def test_both_engines_refuse_the_same_faults_alike(check, model, tmp_path):
    good = unique_state_dict(model)
    embed_shape = tuple(good[EMBED].shape)
    faults = {
        "unknown": ({**good, "extra.weight": torch.zeros(2)}, "`model.safetensors` has tensor `extra.weight`, which "
                    "the served model does not have"),
        "shape": ({**good, EMBED: torch.zeros(2, 3)}, f"`model.safetensors`: tensor `{EMBED}` has shape (2, 3), the "
                  f"served model expects {embed_shape}"),
        "missing": ({n: t for n, t in good.items() if n != EMBED}, f"is missing `{EMBED}`"),
    }  # fmt: skip
    for label, (tensors, message) in faults.items():
        weight_dir = write(tmp_path / label, tensors)
        with pytest.raises(EngineError) as error:
            check(weight_dir)
        assert (error.value.status, error.value.param) == (400, "weight_dir")
        expected = f"weight_dir `{weight_dir}` {message}" if label == "missing" else message
        assert str(error.value) == expected

    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError) as error:
        check(tmp_path / "empty")
    assert (error.value.status, str(error.value)) == (
        404,
        f"weight_dir `{tmp_path / 'empty'}` holds no *.safetensors file",
    )


def test_adapter_tensors_are_read_and_checked_one_file_at_a_time(tmp_path: Path):
    from prime_rl.inference.engines.weights import read_adapter_dir
    from prime_rl.weights.adapter import ADAPTER_CONFIG, ADAPTER_FILE

    a, b = torch.arange(6.0).view(2, 3), torch.ones(3, 2)
    (tmp_path / ADAPTER_CONFIG).write_text('{"r": 2, "lora_alpha": 4}')
    write_tensor_file({"x.lora_A.weight": a, "x.lora_B.weight": b}, tmp_path / ADAPTER_FILE)
    adapter, scale = read_adapter_dir(tmp_path)
    assert scale == 2.0 and torch.equal(adapter["x.lora_A.weight"], a) and torch.equal(adapter["x.lora_B.weight"], b)
    write_tensor_file({"x.lora_A.weight": a, "x.lora_B.weight": b * float("nan")}, tmp_path / ADAPTER_FILE)
    with pytest.raises(EngineError, match=r"tensor `x.lora_B.weight` holds non-finite values"):
        read_adapter_dir(tmp_path)
