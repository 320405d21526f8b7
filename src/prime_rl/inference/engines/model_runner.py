"""The model side of the engine: a transformers causal LM, its slot KV cache, and the prefill and decode forwards.

Supports models whose attention layers call `cache.update` (Llama, Qwen, Mistral, SmolLM...): the runner drives
`model.<base_model_prefix>` with a 4-D boolean mask and a `SlotKVCache`, then applies the output embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from prime_rl.inference.engines.base import EngineError
from prime_rl.inference.engines.kv_cache import SlotKVCache, cache_argument, register_attention
from prime_rl.inference.engines.start_weights import StartWeights
from prime_rl.inference.engines.weights import CheckedWeights, copy_into


class ModelRunner:
    """Owns the model, its tokenizer and the KV cache; every method runs on the engine thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_path: str,
        max_model_len: int | None,
        device: torch.device,
        model_dir: Path | None = None,
    ):
        config = model.config.get_text_config()
        self.model, self.tokenizer, self.model_path, self.device = model, tokenizer, model_path, device
        self.max_model_len = max_model_len or int(config.max_position_embeddings)
        self.vocab_size = int(config.vocab_size)
        self.stop_ids = sorted(self._stop_token_ids())
        self.stop_set = set(self.stop_ids)
        self.stop_tensor = torch.tensor(self.stop_ids, dtype=torch.long, device=device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        dtype = next(model.parameters()).dtype
        self.cache = SlotKVCache(config.num_hidden_layers, config.num_key_value_heads, head_dim, dtype, device)
        self.backbone = getattr(model, model.base_model_prefix)
        self.cache_arg = cache_argument(self.backbone)
        self.lm_head = model.get_output_embeddings()
        self.start = StartWeights(model, model_dir)
        """The starting weights (what `/reload_weights` restores and LoRA adapters merge into)."""

    def _stop_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config, self.model.config, self.tokenizer):
            eos = getattr(source, "eos_token_id", None)
            ids.update([eos] if isinstance(eos, int) else (eos or []))
        if not ids:
            raise EngineError(f"model `{self.model_path}` defines no eos_token_id", status=500)
        return ids

    def prefill(
        self, prompts: list[list[int]], first_slot: int, copies: list[int], limit: int | None = None
    ) -> Float[Tensor, "rows vocab"]:
        """Prefills `prompts` into slots `first_slot...`, then copies prompt `i` into `copies[i] - 1` more slots;
        `limit` is the longest any running sequence can get (what the cache reserves at most).

        Returns the next-token logits of every slot filled, in slot order: one row per prompt, then the copies
        (prompt by prompt).
        """
        lengths = [len(p) for p in prompts]
        longest = max(lengths)
        self.cache.reserve(first_slot + sum(copies), longest + 1, limit)
        input_ids = torch.full((len(prompts), longest), self.pad_id, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, : lengths[i]] = torch.tensor(prompt)
        length_t = torch.tensor(lengths)
        positions = torch.arange(longest)
        causal = positions[None, :] <= positions[:, None]
        mask = causal[None] & (positions[None, None, :] < length_t[:, None, None])
        self.cache.prepare(first_slot, len(prompts), None, longest)
        hidden = self.backbone(
            input_ids=input_ids.to(self.device),
            attention_mask=mask[:, None].to(self.device),
            position_ids=positions[None].expand(len(prompts), -1).to(self.device),
            **{self.cache_arg: self.cache},
            use_cache=True,
        ).last_hidden_state
        last = hidden[torch.arange(len(prompts), device=self.device), (length_t - 1).to(self.device)]
        logits = self.lm_head(last)
        rows = list(range(len(prompts)))
        slot = first_slot + len(prompts)
        for i, n in enumerate(copies):
            for _ in range(n - 1):
                self.cache.copy_slot(first_slot + i, slot, lengths[i])
                rows.append(i)
                slot += 1
        return logits[torch.tensor(rows, device=self.device)]

    def decode(
        self, last_tokens: list[int], lengths: list[int], limit: int | None = None
    ) -> Float[Tensor, "batch vocab"]:
        """One token for slots 0..len-1: `last_tokens[i]` goes to position `lengths[i]` of slot `i` (`limit`: as in
        `prefill`)."""
        positions = torch.tensor(lengths)
        read_len = int(positions.max()) + 1
        self.cache.reserve(len(lengths), read_len, limit)
        mask = torch.arange(read_len)[None, :] <= positions[:, None]
        input_ids = torch.tensor([[t] for t in last_tokens], device=self.device)
        positions_d = positions.to(self.device)
        self.cache.prepare(0, len(lengths), positions_d, read_len)
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=mask[:, None, None, :].to(self.device),
            position_ids=positions_d[:, None],
            **{self.cache_arg: self.cache},
            use_cache=True,
        ).last_hidden_state
        return self.lm_head(hidden[:, 0])

    def score(self, tokens: list[int], start: int, temperature: float) -> Float[Tensor, " scored"]:
        """Teacher-forced logprobs of `tokens[start:]` at `temperature`: one causal forward without the KV cache,
        the LM head only on the positions that predict a scored token."""
        input_ids = torch.tensor([tokens], device=self.device)
        hidden = self.backbone(input_ids=input_ids, use_cache=False).last_hidden_state[0, start - 1 : -1]
        logits = self.lm_head(hidden).float() / temperature
        labels = torch.tensor(tokens[start:], device=self.device)
        return torch.log_softmax(logits, dim=-1).gather(1, labels[:, None])[:, 0]

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        """Copies canonical-name tensors into the model in place."""
        self.start.before_change(tensors)
        with torch.inference_mode(False), torch.no_grad():
            copy_into(self.model, tensors)

    def load_checked(self, checked: CheckedWeights) -> None:
        """Copies a checked weight directory into the model in place, one tensor at a time."""
        self.start.before_change(checked.sources)
        with torch.inference_mode(False), torch.no_grad():
            checked.copy_into_model(self.model)

    def restore_start(self, names: Iterable[str] | None = None) -> list[str]:
        """Writes the starting values of `names` (default: every changed weight) back; returns the names written."""
        with torch.inference_mode(False), torch.no_grad():
            return self.start.restore(names)


def load_model_runner(
    model_path: str, dtype: str, device: str, max_model_len: int | None, num_threads: int | None
) -> ModelRunner:
    """Loads tokenizer and model (with the engine's attention) onto the resolved device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prime_rl.utils.device import get_device, resolve_dtype
    from prime_rl.utils.threads import setup_threads

    setup_threads(num_threads, "inference")
    torch_device = get_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch_dtype, attn_implementation=register_attention()
    )
    model.to(torch_device).eval()
    return ModelRunner(model, tokenizer, model_path, max_model_len, torch_device, local_model_dir(model_path))


def local_model_dir(model_path: str) -> Path | None:
    """The local directory of a model path or hub id (None when it is not there without a download)."""
    if Path(model_path).is_dir():
        return Path(model_path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_path, local_files_only=True))
    except Exception:  # not a cached hub repo: the starting weights are then copied in memory
        return None
