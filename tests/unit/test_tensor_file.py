"""`TensorFile` reads into a given tensor and in chunks, so a weight update's check and copy hold no tensor-sized
temporaries (the server's update peaked +0.29 GiB over its model on SmolLM2's embedding before)."""

from __future__ import annotations

import pytest
import torch

from prime_rl.inference.engines.weights import check_weight_dir
from prime_rl.weights.tensor_file import TensorFile, write_tensor_file


@pytest.fixture
def weights(tmp_path):
    tensors = {
        "a": torch.arange(10_000, dtype=torch.float32).reshape(100, 100),
        "b": torch.ones(3, dtype=torch.bfloat16),
    }
    write_tensor_file(tensors, tmp_path / "model.safetensors")
    return tmp_path / "model.safetensors", tensors


def test_read_into_a_given_tensor_writes_its_memory(weights):
    path, tensors = weights
    target = torch.zeros(100, 100)
    with TensorFile(path) as file:
        out = file.read("a", out=target)
    assert out.data_ptr() == target.data_ptr() and torch.equal(target, tensors["a"])


REFUSED = [
    (torch.zeros(100, 100, dtype=torch.float64), "a torch.float64 tensor of shape (100, 100)"),
    (torch.zeros(100, 101), "a torch.float32 tensor of shape (100, 101)"),
    (torch.zeros(100, 100).t(), "a non-contiguous torch.float32 tensor of shape (100, 100)"),
]


@pytest.mark.parametrize(("target", "why"), REFUSED)
def test_read_refuses_a_tensor_it_cannot_fill(weights, target, why):
    with TensorFile(weights[0]) as file, pytest.raises(ValueError) as error:
        file.read("a", out=target)
    assert str(error.value).endswith(f"tensor `a` (F32, (100, 100)) cannot be read into {why} on cpu")


def test_chunks_give_every_element_in_order_within_the_size(weights):
    path, tensors = weights
    with TensorFile(path) as file:
        sizes, values = [], []
        for chunk in file.chunks("a", max_bytes=4096):
            sizes.append(chunk.numel())
            values.append(chunk.clone())
        assert sizes == [1024] * 9 + [784]
        assert torch.equal(torch.cat(values), tensors["a"].reshape(-1))
        assert torch.equal(next(file.chunks("b")), tensors["b"])


def test_a_weight_update_checks_in_chunks_and_reads_into_the_parameters(tmp_path, monkeypatch):
    model = torch.nn.Linear(1000, 1100, bias=False)  # 4.2 MiB: more than one 4 MiB chunk
    write_tensor_file({"weight": torch.full((1100, 1000), 0.5)}, tmp_path / "model.safetensors")
    checked_sizes = []
    isfinite = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: checked_sizes.append(t.numel()) or isfinite(t))
    checked = check_weight_dir(tmp_path, model)
    assert checked_sizes == [1024 * 1024, 1100 * 1000 - 1024 * 1024]
    pointer = model.weight.data_ptr()
    monkeypatch.setattr(torch.Tensor, "copy_", lambda *a: pytest.fail("copied instead of read in place"))
    checked.copy_into_model(model)
    checked.close()
    assert model.weight.data_ptr() == pointer and bool((model.weight == 0.5).all())
