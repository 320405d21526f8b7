"""Weight broadcast (tied duplicates removed, STABLE, keep last) and HF export (from_pretrained with tokenizer)."""

from __future__ import annotations

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from prime_rl.inference.engines.weights import check_weight_dir
from prime_rl.trainer.config import TrainerModelConfig
from prime_rl.trainer.model import setup_model, setup_tokenizer
from prime_rl.weights.broadcast import broadcast_weights
from prime_rl.weights.export import export_hf


def test_broadcast_drops_tied_lm_head_and_keeps_last(tiny_model_dir, tmp_path):
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir)))
    with torch.no_grad():
        model.model.embed_tokens.weight.add_(1.0)
    for step in (1, 2, 3):
        path = broadcast_weights(model, tmp_path, step, keep=2)
    assert sorted(p.name for p in (tmp_path / "broadcasts").iterdir()) == ["step_2", "step_3"]
    assert sorted(p.name for p in path.iterdir()) == ["STABLE", "model.safetensors"]
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" not in keys and "model.embed_tokens.weight" in keys

    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # loaded as the inference server loads it
    checked = check_weight_dir(path, fresh)
    checked.copy_into_model(fresh)
    checked.close()
    torch.testing.assert_close(fresh.model.embed_tokens.weight, model.model.embed_tokens.weight, atol=0, rtol=0)
    torch.testing.assert_close(fresh.lm_head.weight, model.lm_head.weight, atol=0, rtol=0)


def test_export_loads_with_from_pretrained(tiny_model_dir, tmp_path):
    config = TrainerModelConfig(name=str(tiny_model_dir))
    model = setup_model(config)
    path = export_hf(model, setup_tokenizer(config), tmp_path, step=5)
    assert path == tmp_path / "weights" / "step_5" and (path / "STABLE").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    x = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, model(input_ids=x).logits, atol=1e-5, rtol=0)
