"""LoRA on the vLLM engine: the engine arguments that turn on vLLM's own LoRA support, and the check of a peft adapter
directory (the trainer's LoRA broadcast, `weights/adapter.py`) against the served model before vLLM reads it.

vLLM loads the broadcast as it is: `adapter_config.json` and `adapter_model.safetensors` under peft's saved names
(`base_model.model.<module>.lora_A.weight`), mapping q/k/v and gate/up onto its fused layers itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prime_rl.inference.engines.base import EngineError

if TYPE_CHECKING:
    from prime_rl.inference.engines.weights import ParameterTable

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM 0.32 accepts for `max_lora_rank`; a smaller adapter is zero-padded to it (same outputs)."""


def lora_engine_args(max_rank: int) -> dict[str, Any]:
    """`vllm.AsyncEngineArgs` fields serving one adapter of rank up to `max_rank` (rounded up to `VLLM_LORA_RANKS`)."""
    rank = next(r for r in VLLM_LORA_RANKS if r >= max_rank)
    # One adapter at a time: every request runs with the latest policy, and an update removes the previous adapter.
    return {"enable_lora": True, "max_lora_rank": rank, "max_loras": 1, "max_cpu_loras": 1}


def check_adapter_dir(weight_dir: Path, table: ParameterTable, max_rank: int | None) -> int:
    """Raises EngineError (400) naming the file and the problem: LoRA off (`max_rank` None), a config the plain merge
    does not describe, a rank above `max_rank`, a tensor that is not floating point and finite, or an adapted module
    the served model lacks or does not fit; returns the adapter's rank."""
    from prime_rl.inference.engines.weights import read_adapter_dir
    from prime_rl.weights.adapter import (
        ADAPTER_CONFIG,
        ADAPTER_FILE,
        adapter_pairs,
        check_adapter_shapes,
        read_adapter_config,
    )

    if max_rank is None:
        raise EngineError(
            f"weight_dir `{weight_dir}` holds a LoRA adapter but this server runs without LoRA: set "
            "`vllm.max_lora_rank` (`rl` sets it from `[model.lora]`)",
            "weight_dir",
        )
    adapter, _ = read_adapter_dir(weight_dir)
    rank = read_adapter_config(weight_dir)["r"]
    if rank > max_rank:
        raise EngineError(
            f"`{weight_dir / ADAPTER_CONFIG}`: rank r = {rank} exceeds the server's `vllm.max_lora_rank` ({max_rank})",
            "weight_dir",
        )
    shapes = {alias: table.shapes[canonical] for alias, canonical in table.aliases.items()}
    try:
        check_adapter_shapes(adapter_pairs(adapter), shapes)
    except ValueError as e:
        raise EngineError(f"`{weight_dir / ADAPTER_FILE}`: {e}", "weight_dir") from None
    return rank
