"""The grouped-query SDPA without key repetition, and the slot KV cache's growth and slot copies."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prime_rl.inference.engines.kv_cache import SlotKVCache, grouped_sdpa


def reference(query, key, value, mask):
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)


def test_grouped_sdpa_matches_repeated_keys_for_decode_and_prefill():
    torch.manual_seed(0)
    for q_len, kv_len in [(1, 7), (5, 5)]:
        query, key, value = torch.randn(3, 6, q_len, 8), torch.randn(3, 2, kv_len, 8), torch.randn(3, 2, kv_len, 8)
        lengths = torch.tensor([kv_len, 3, 2])
        causal = torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len)
        mask = (causal[None] & (torch.arange(kv_len)[None, None] < lengths[:, None, None]))[:, None]
        if q_len > 1:
            mask = mask | (torch.arange(kv_len) == 0)  # padded query rows still see position 0
        out, _ = grouped_sdpa(None, query, key, value, mask)
        assert torch.allclose(out, reference(query, key, value, mask), atol=1e-5)


def test_cache_grows_without_losing_content_and_copies_slots():
    cache = SlotKVCache(num_layers=2, num_kv_heads=1, head_dim=2, dtype=torch.float32, device=torch.device("cpu"))
    cache.reserve(slots=2, length=3)
    assert (cache.slots, cache.length) == (2, 64)
    cache.prepare(first_slot=0, batch=2, write_pos=None, read_len=3)
    prompt = torch.arange(12, dtype=torch.float32).reshape(2, 1, 3, 2)
    keys, _ = cache.update(prompt, prompt, layer_idx=1)
    assert torch.equal(keys, prompt)
    cache.reserve(slots=3, length=100)
    assert cache.slots == 3 and cache.length >= 100
    cache.prepare(first_slot=0, batch=2, write_pos=torch.tensor([3, 1]), read_len=4)
    step = torch.full((2, 1, 1, 2), -1.0)
    keys, _ = cache.update(step, step, layer_idx=1)
    assert torch.equal(keys[0, 0, :3], prompt[0, 0]) and torch.equal(keys[0, 0, 3], torch.tensor([-1.0, -1.0]))
    assert torch.equal(keys[1, 0, 1], torch.tensor([-1.0, -1.0]))
    cache.copy_slot(src=0, dst=2, length=4)
    assert torch.equal(cache.keys[1][2, :, :4], cache.keys[1][0, :, :4])


def test_cache_reserves_ahead_no_further_than_the_limit():
    cache = SlotKVCache(num_layers=1, num_kv_heads=1, head_dim=2, dtype=torch.float32, device=torch.device("cpu"))
    cache.reserve(slots=4, length=44, limit=67)
    assert (cache.slots, cache.length) == (4, 64)
    cache.reserve(slots=4, length=65, limit=67)  # doubling would reserve 128
    assert cache.length == 67 and cache.keys[0].shape == (4, 1, 67, 2)
    cache.reserve(slots=4, length=70, limit=67)  # a limit below the need never shrinks it
    assert cache.length == 70
