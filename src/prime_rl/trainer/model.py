"""Loads the causal LM and tokenizer named by `model.name` (hub id, local directory or built-in alias)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from prime_rl.trainer.attention import register_varlen_attention
from prime_rl.trainer.config import ParallelConfig, TrainerModelConfig
from prime_rl.trainer.in_place_grad import use_in_place_embedding_grad
from prime_rl.trainer.lean_mlp import use_lean_mlp
from prime_rl.trainer.parallel import World, shard_model
from prime_rl.utils.device import get_device, resolve_dtype
from prime_rl.utils.logger import get_logger
from prime_rl.utils.models import resolve_model_path


def model_path(config: TrainerModelConfig) -> str:
    return resolve_model_path(config.name, config.cache_dir)


def setup_model(
    config: TrainerModelConfig, parallel: ParallelConfig | None = None, world: World | None = None
) -> PreTrainedModel:
    """The model on its device, in its dtype, in train mode, with the configured attention implementation, the input
    embedding's in-place gradient (`in_place_grad.py`) and, if `lean_mlp`, the lean MLP backward (`lean_mlp.py`);
    with `parallel`, activation checkpointing if set and, in a distributed `world`, sharded by FSDP2."""
    device = get_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    attn = config.attn_implementation
    if attn == "varlen":
        register_varlen_attention()
    path = model_path(config)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation=attn, trust_remote_code=config.trust_remote_code
        )
    except OSError as e:
        raise OSError(f"model.name `{config.name}`: cannot load a causal LM from `{path}`: {e}") from e
    model.config.use_cache = False
    if config.lora is not None:
        from prime_rl.trainer.lora import apply_lora

        apply_lora(model, config.lora, path)
    use_in_place_embedding_grad(model)
    if config.lean_mlp:
        use_lean_mlp(model)  # after LoRA: a wrapped `down_proj` keeps its own backward
    sharded = world is not None and world.distributed
    if not sharded:
        model.to(device)
    model.train()
    if parallel is not None and parallel.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if sharded:
        shard_model(model, parallel or ParallelConfig(), world, device.type)  # moves the shards to the device
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    get_logger("trainer").info(
        f"Loaded {config.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
        f"{trainable / 1e6:.2f}M trainable) "
        f"on {device} in {dtype}, attention {attn}" + (f", sharded over {world.size} ranks" if sharded else "")
    )
    return model


def setup_tokenizer(config: TrainerModelConfig) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(model_path(config), trust_remote_code=config.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
