"""Weight hand-offs without whole-model copies: safetensors written and read one tensor at a time, updates checked
before any copy, `/reload_weights` re-reading the model directory, LoRA merges from copies of the adapted weights
only, and the in-memory copy when the model directory cannot give the starting weights back."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from prime_rl.inference.engines.base import EngineError
from prime_rl.inference.engines.hf import setup_hf_engine
from prime_rl.inference.engines.start_weights import StartWeights
from prime_rl.weights.adapter import merge_adapter
from prime_rl.weights.state import unique_state_dict
from prime_rl.weights.tensor_file import TensorFile, write_tensor_file

Q = "model.layers.0.self_attn.q_proj.weight"
V = "model.layers.1.self_attn.v_proj.weight"
EMBED = "model.embed_tokens.weight"


def test_tensor_file_reads_what_safetensors_wrote(tmp_path):
    tensors = {
        "f32": torch.randn(3, 5),
        "bf16": torch.randn(7).to(torch.bfloat16),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
        "ints": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }
    save_file(tensors, str(tmp_path / "a.safetensors"), metadata={"format": "pt"})
    with TensorFile(tmp_path / "a.safetensors") as file:
        assert set(file.entries) == set(tensors) and file.entries["f32"].shape == (3, 5)
        for name, tensor in tensors.items():
            read = file.read(name)
            assert read.dtype == tensor.dtype and torch.equal(read, tensor), name


def test_written_tensor_file_reads_back_with_safetensors(tmp_path):
    tensors = {
        "w": torch.randn(4, 3),
        "t": torch.randn(3, 4).t(),  # not contiguous
        "bf16": torch.randn(5).to(torch.bfloat16),
        "empty": torch.zeros(0),
    }
    write_tensor_file(tensors, tmp_path / "w.safetensors", {"step": "3"})
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert f.metadata() == {"step": "3"} and sorted(f.keys()) == sorted(tensors)
        for name, tensor in tensors.items():
            assert torch.equal(f.get_tensor(name), tensor), name
    assert (tmp_path / "w.safetensors").read_bytes()[8:].index(b"{") == 0  # the JSON header follows its length


def test_tensor_file_refuses_a_broken_file_naming_it(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ValueError, match=r"`.*junk.safetensors` is not a safetensors file \(header length"):
        TensorFile(tmp_path / "junk.safetensors")
    save_file({"w": torch.ones(100)}, str(tmp_path / "cut.safetensors"))
    data = (tmp_path / "cut.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="tensor `w` lies beyond the end of the file"):
        TensorFile(tmp_path / "cut.safetensors")


def run(engine, *calls):
    """Runs engine coroutine factories in order on a started engine; returns their results."""

    async def go():
        return [await call() for call in calls]

    engine.start()
    try:
        return asyncio.run(go())
    finally:
        engine.shutdown()


def served(engine) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in unique_state_dict(engine.runner.model).items()}


def assert_state(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name


def write_weights(path, tensors) -> object:
    path.mkdir(parents=True)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def write_adapter(
    path, modules: list[tuple[str, tuple[int, int]]], seed: int, rank: int = 2, alpha: float = 4.0
) -> dict:
    gen = torch.Generator().manual_seed(seed)
    adapter = {}
    for module, (out_dim, in_dim) in modules:
        base = f"base_model.model.{module.removesuffix('.weight')}"
        adapter[f"{base}.lora_A.weight"] = torch.randn(rank, in_dim, generator=gen)
        adapter[f"{base}.lora_B.weight"] = torch.randn(out_dim, rank, generator=gen)
    path.mkdir(parents=True)
    save_file(adapter, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": alpha, "peft_type": "LORA"}))
    return adapter


def engine_for(model_dir):
    return setup_hf_engine(str(model_dir), dtype="float32", device="cpu", max_batch_size=4, num_threads=1)


def test_full_update_then_reload_reads_the_model_directory_back_exactly(tiny_model_dir, tmp_path):
    engine = engine_for(tiny_model_dir)
    start = served(engine)
    assert engine.runner.start.sources is not None  # the directory holds exactly the loaded weights
    new = {n: t + 1.0 for n, t in start.items()}
    weight_dir = write_weights(tmp_path / "step_1", new)

    async def update():
        await engine.update_weights(weight_dir, 1)
        return served(engine), dict(engine.runner.start.saved)

    async def reload():
        await engine.reload_weights()
        return served(engine)

    (updated, saved), restored = run(engine, update, reload)
    assert_state(updated, new)
    assert saved == {}  # no copy of the starting weights held
    assert_state(restored, start)
    assert engine.policy_step == 0 and engine.runner.start.changed == set()


def test_a_refused_update_changes_nothing_and_a_deleted_directory_still_copies(tiny_model_dir, tmp_path):
    engine = engine_for(tiny_model_dir)
    start = served(engine)
    bad = {n: t + 1.0 for n, t in start.items()}
    bad[max(bad)] = bad[max(bad)].clone().index_fill_(0, torch.tensor([0]), float("nan"))
    bad_dir = write_weights(tmp_path / "bad", bad)
    with pytest.raises(EngineError, match=f"tensor `{max(bad)}` holds non-finite values"):
        run(engine, lambda: engine.update_weights(bad_dir, 1))
    assert_state(served(engine), start)

    from prime_rl.inference.engines.weights import check_weight_dir

    good = {n: t * 2.0 for n, t in start.items()}
    checked = check_weight_dir(write_weights(tmp_path / "good", good), engine.runner.model)
    shutil.rmtree(tmp_path / "good")  # the trainer cleans old broadcasts: the open files stay readable
    try:
        engine.runner.load_checked(checked)
    finally:
        checked.close()
    assert_state(served(engine), good)


def test_lora_merges_from_copies_of_the_adapted_weights_only(tiny_model_dir, tmp_path):
    engine = engine_for(tiny_model_dir)
    start = served(engine)
    shapes = [(Q, tuple(start[Q].shape)), (V, tuple(start[V].shape))]
    first = write_adapter(tmp_path / "step_1", shapes, seed=1)
    second = write_adapter(tmp_path / "step_3", shapes[:1], seed=2)
    full_dir = write_weights(tmp_path / "step_2", {n: t - 0.5 for n, t in start.items()})

    async def apply(path, step):
        await engine.update_weights(path, step)
        return served(engine), set(engine.runner.start.saved)

    async def reload():
        await engine.reload_weights()
        return served(engine)

    (one, saved_one), _, (three, saved_three), restored = run(
        engine,
        lambda: apply(tmp_path / "step_1", 1),
        lambda: apply(full_dir, 2),
        lambda: apply(tmp_path / "step_3", 3),
        reload,
    )
    assert saved_one == saved_three == {Q, V}  # never the embeddings or the other layers
    assert_state(one, start | merge_adapter(start, first, 2.0))
    # After a full update, the next adapter merges into the starting weights and every other weight is restored.
    assert_state(three, start | merge_adapter(start, second, 2.0))
    assert_state(restored, start)


def test_without_usable_files_the_starting_weights_are_copied_before_a_change(tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    engine = engine_for(model_dir)
    start = served(engine)
    with torch.no_grad():  # the served weights no longer equal the directory's
        engine.runner.model.get_parameter(EMBED).add_(1.0)
    changed = served(engine)
    fresh = StartWeights(engine.runner.model, model_dir)
    assert fresh.sources is None
    engine.runner.start = fresh
    weight_dir = write_weights(tmp_path / "step_1", {n: t * 3.0 for n, t in start.items()})

    async def reload():
        await engine.reload_weights()
        return served(engine), set(engine.runner.start.saved)

    ((restored, saved),) = run(engine, lambda: engine.update_weights(weight_dir, 1), reload)[1:]
    assert saved == set(start)  # the copy, as before this change
    assert_state(restored, changed)
