"""LoRA (peft) on the tiny model: only adapters train, broadcasts carry only the adapter, the HF engine serves the
trainer's adapted policy, exports load with peft, checkpoints resume exactly, bad configs name their key."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from prime_rl.inference.engines.base import EngineError, SamplingParams
from prime_rl.inference.engines.hf import setup_hf_engine
from prime_rl.trainer.ckpt import load_checkpoint, save_checkpoint
from prime_rl.trainer.config import AdamWConfig, ConstantSchedulerConfig, LoRAConfig, TrainerModelConfig
from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.lora import is_adapter_param
from prime_rl.trainer.model import setup_model, setup_tokenizer
from prime_rl.trainer.optim import setup_optimizer
from prime_rl.trainer.packing import pack_samples
from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.trainer.scheduler import setup_scheduler
from prime_rl.trainer.step import train_step
from prime_rl.transport.types import TrainingSample
from prime_rl.utils.config import ConfigError
from prime_rl.weights.broadcast import broadcast_weights
from prime_rl.weights.export import MERGED_DIR, export_hf

LORA = LoRAConfig(rank=4, alpha=8.0)


def samples(seed: int) -> list[TrainingSample]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for advantage in (1.0, -1.0, 0.5):
        ids = torch.randint(0, 5000, (12,), generator=gen).tolist()
        out.append(TrainingSample(prompt_ids=ids[:4], completion_ids=ids[4:], completion_mask=[True] * 8,
                                  completion_logprobs=[-9.0] * 8, completion_temperatures=[1.0] * 8,
                                  advantage=advantage, reward=0.0, policy_step=0))  # fmt: skip
    return out


def setup(model_dir, seed: int = 0):
    torch.manual_seed(seed)
    model = setup_model(TrainerModelConfig(name=str(model_dir), lora=LORA))
    optimizer = setup_optimizer(AdamWConfig(lr=1e-2), model)
    return model, optimizer, setup_scheduler(ConstantSchedulerConfig(), optimizer, None)


def step(model, optimizer, scheduler, seed: int) -> float:
    batches = pack_samples(samples(seed), 64)
    return train_step(model, optimizer, scheduler, batches, setup_loss_fn(LossConfig()), 1.0, 64).loss


def test_lora_step_changes_only_adapter_params(tiny_model_dir):
    model, optimizer, scheduler = setup(tiny_model_dir)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    adapters = [p for name, p in model.named_parameters() if is_adapter_param(name)]
    assert [p for p in model.parameters() if p.requires_grad] == adapters and len(adapters) == 2 * 7 * 2
    step(model, optimizer, scheduler, 0)
    assert set(optimizer.state) == set(adapters)  # no optimizer state for the frozen base
    after = model.state_dict()
    for name, tensor in before.items():
        if is_adapter_param(name):
            assert not torch.equal(after[name], tensor), name
        else:
            assert torch.equal(after[name], tensor), name  # base bit-identical


def trainer_logprobs(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor(prompt + completion)
    with torch.no_grad():
        lp, _ = packed_logprobs(model.eval(), ids, torch.arange(len(ids)), torch.ones(len(ids)), [len(ids)])
    return lp[len(prompt) :]


def test_adapter_broadcast_is_served_like_the_trainers_forward(tiny_model_dir, tmp_path):
    model, optimizer, scheduler = setup(tiny_model_dir)
    step(model, optimizer, scheduler, 0)
    path = broadcast_weights(model, tmp_path, 1, keep=1)
    assert sorted(p.name for p in path.iterdir()) == ["STABLE", "adapter_config.json", "adapter_model.safetensors"]
    with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
    assert len(keys) == 28 and keys[0] == "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"
    config = json.loads((path / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["peft_type"]) == (4, 8.0, "LORA")

    engine = setup_hf_engine(str(tiny_model_dir), dtype="float32", device="cpu", max_batch_size=4, num_threads=1)
    base = {n: t.clone() for n, t in engine.runner.model.state_dict().items()}
    prompt = [1, 42, 7, 99, 5]
    engine.start()

    async def sample_then_reload():
        await engine.update_weights(path, 1)
        result = await engine.generate(prompt, SamplingParams(temperature=1.0, max_tokens=12, min_tokens=12, seed=3))
        await engine.reload_weights()
        return result.choices[0]

    try:
        choice = asyncio.run(sample_then_reload())
    finally:
        engine.shutdown()
    expected = trainer_logprobs(model, prompt, choice.token_ids_T)
    # Tolerance: the engine serves W + s * B @ A merged, the trainer runs W x + s * B (A x): float32 rounding only.
    torch.testing.assert_close(torch.tensor(choice.logprobs_T), expected, atol=1e-4, rtol=0)
    restored = engine.runner.model.state_dict()
    assert all(torch.equal(restored[n], t) for n, t in base.items())  # /reload_weights restores the base


def test_adapter_of_another_shape_is_refused(tiny_model_dir, tmp_path):
    model, *_ = setup(tiny_model_dir)
    path = broadcast_weights(model, tmp_path, 1, keep=1)
    config = json.loads((path / "adapter_config.json").read_text())
    (path / "adapter_config.json").write_text(json.dumps(config | {"rank_pattern": {"q_proj": 2}}))
    engine = setup_hf_engine(str(tiny_model_dir), dtype="float32", device="cpu", num_threads=1)
    engine.start()
    try:
        with pytest.raises(EngineError, match="`rank_pattern` is not supported"):
            asyncio.run(engine.update_weights(path, 1))
    finally:
        engine.shutdown()


def test_export_loads_with_peft_and_merged(tiny_model_dir, tmp_path):
    model, optimizer, scheduler = setup(tiny_model_dir)
    step(model, optimizer, scheduler, 0)
    path = export_hf(model, setup_tokenizer(TrainerModelConfig(name=str(tiny_model_dir))), tmp_path, 1, merged=True)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", MERGED_DIR} <= {
        p.name for p in path.iterdir()
    }
    x = torch.tensor([[1, 42, 7, 99, 5, 17]])
    with torch.no_grad():
        expected = model.eval()(input_ids=x).logits
        peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), path).eval()
        torch.testing.assert_close(peft(input_ids=x).logits, expected, atol=0, rtol=0)
        merged = AutoModelForCausalLM.from_pretrained(path / MERGED_DIR).eval()
        assert not any("lora" in name for name in merged.state_dict())
        torch.testing.assert_close(merged(input_ids=x).logits, expected, atol=1e-5, rtol=0)


def test_checkpoint_resume_with_lora_is_exact(tiny_model_dir, tmp_path):
    model, optimizer, scheduler = setup(tiny_model_dir)
    step(model, optimizer, scheduler, 0)
    save_checkpoint(tmp_path, 1, model, optimizer, scheduler)
    step(model, optimizer, scheduler, 1)

    other, other_opt, other_sched = setup(tiny_model_dir, seed=1)  # other adapter init
    load_checkpoint(tmp_path, 1, other, other_opt, other_sched)
    step(other, other_opt, other_sched, 1)
    expected = model.state_dict()
    assert all(torch.equal(t, expected[n]) for n, t in other.state_dict().items())


LINEAR = "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"


@pytest.mark.parametrize(
    "target, message",
    [
        ("qkv", f"LlamaForCausalLM has no module `qkv` (its linear layers: {LINEAR})"),
        # peft would wrap the embedding with `lora_embedding_A/B`, which neither train nor broadcast here.
        ("embed_tokens", f"`embed_tokens` of LlamaForCausalLM is an `Embedding` module, not a linear layer (LoRA "
                         f"adapts linear layers: {LINEAR})"),
    ],
)  # fmt: skip
def test_bad_target_module_names_the_key(tiny_model_dir, target: str, message: str):
    config = TrainerModelConfig(name=str(tiny_model_dir), lora=LoRAConfig(target_modules=["q_proj", target]))
    with pytest.raises(ConfigError) as error:
        setup_model(config)
    assert str(error.value) == f"`model.lora.target_modules`: {message}"
