"""A slot-based KV cache for continuous batching on top of HF attention modules, and a GQA attention without copies.

Every running sequence owns one slot (a row of a `[slots, kv_heads, length, head_dim]` buffer per layer) and keeps
its keys from position 0, so a decode step writes one column per row in place and attends to a view of the buffer:
no `torch.cat` of the whole cache per token (what `DynamicCache` does) and no re-padding when sequences of different
lengths join. Sequences that finish are compacted away by moving the last rows into their slots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

ATTENTION_NAME = "prime_grouped_sdpa"


def grouped_sdpa(
    module: torch.nn.Module,
    query: Float[Tensor, "batch q_heads q_len head_dim"],
    key: Float[Tensor, "batch kv_heads kv_len head_dim"],
    value: Float[Tensor, "batch kv_heads kv_len head_dim"],
    attention_mask: Bool[Tensor, "batch 1 q_len kv_len"] | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[Float[Tensor, "batch q_len q_heads head_dim"], None]:
    """SDPA where the query heads sharing a KV head are folded into the query length, so keys are never repeated.

    transformers' own sdpa path repeats K/V `q_heads // kv_heads` times whenever a mask is given, which on CPU
    copies the whole cache every layer of every decode step.
    """
    b, hq, lq, d = query.shape
    hkv = key.shape[1]
    if attention_mask is None:  # a plain causal (or single-token) forward outside the engine, e.g. `generate`
        out = F.scaled_dot_product_attention(query, key, value, is_causal=lq > 1, scale=scaling, enable_gqa=True)
        return out.transpose(1, 2), None
    groups = hq // hkv
    q = query.reshape(b, hkv, groups * lq, d)
    mask = attention_mask
    if mask is not None and groups > 1 and lq > 1:
        mask = mask.unsqueeze(2).expand(b, 1, groups, lq, mask.shape[-1]).reshape(b, 1, groups * lq, -1)
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(b, hq, lq, d).transpose(1, 2), None


def cache_argument(backbone: torch.nn.Module) -> str:
    """The keyword under which the backbone takes its cache: `cache` from transformers 5.20 on, `past_key_values`
    before (vLLM's CPU build pins transformers < 5.20 and its venv also runs this engine)."""
    import inspect

    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"


def register_attention() -> str:
    """Registers `grouped_sdpa` with transformers and returns the name to pass as `attn_implementation`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, grouped_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


class SlotKVCache:
    """Per-layer key/value buffers indexed by slot; duck-types the `update` method HF attention layers call.

    Before each forward, `prepare` says which contiguous slot range the batch rows map to, where their new keys go
    (position 0 for a prefill, each row's own length for a decode step) and how many positions to attend over.
    """

    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.num_layers, self.num_kv_heads, self.head_dim = num_layers, num_kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.slots = 0
        self.length = 0
        self._rows = slice(0, 0)
        self._row_index: Tensor | None = None
        self._write_pos: Tensor | None = None
        self._read_len = 0

    def reserve(self, slots: int, length: int, limit: int | None = None) -> None:
        """Grows the buffers (keeping their content) to hold at least `slots` sequences of `length` tokens; `limit`
        (the longest any running sequence can get) caps the extra length reserved ahead."""
        if slots <= self.slots and length <= self.length:
            return
        new_slots = max(slots, self.slots)
        new_length = max(length, min(2 * self.length, length + 512)) if self.length else length
        new_length = -(-new_length // 64) * 64
        if limit is not None:
            new_length = max(length, self.length, min(new_length, limit))
        shape = (new_slots, self.num_kv_heads, new_length, self.head_dim)
        for store in (self.keys, self.values):
            for i in range(self.num_layers):
                buf = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if store and i < len(store):
                    buf[: self.slots, :, : self.length] = store[i]
                    store[i] = buf
                else:
                    store.append(buf)
        self.slots, self.length = new_slots, new_length

    def release(self) -> None:
        """Frees the buffers (called when no sequence is running)."""
        self.keys, self.values = [], []
        self.slots = self.length = 0

    def prepare(self, first_slot: int, batch: int, write_pos: Int[Tensor, " batch"] | None, read_len: int) -> None:
        """`write_pos=None` writes the forward's keys from position 0 (prefill), else one token at `write_pos`."""
        self._rows = slice(first_slot, first_slot + batch)
        self._write_pos = write_pos
        self._row_index = (
            None if write_pos is None else torch.arange(first_slot, first_slot + batch, device=self.device)
        )
        self._read_len = read_len

    def update(
        self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[Tensor, Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self._write_pos is None:
            length = key_states.shape[2]
            keys[self._rows, :, :length] = key_states
            values[self._rows, :, :length] = value_states
        else:
            keys[self._row_index, :, self._write_pos] = key_states[:, :, 0]
            values[self._row_index, :, self._write_pos] = value_states[:, :, 0]
        return keys[self._rows, :, : self._read_len], values[self._rows, :, : self._read_len]

    def copy_slot(self, src: int, dst: int, length: int) -> None:
        """Copies the first `length` positions of slot `src` into slot `dst` (all layers)."""
        for store in (self.keys, self.values):
            for buf in store:
                buf[dst, :, :length] = buf[src, :, :length]
