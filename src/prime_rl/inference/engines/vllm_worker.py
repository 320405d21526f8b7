"""Mixed into every vLLM worker (`worker_extension_cls`) and called through `collective_rpc`: loads a trainer's
safetensors directory, or the served model's own checkpoint, into the running model in place.

Runs inside vLLM's worker processes, so it imports nothing of prime-rl that needs the server's state. Names are the
HF checkpoint names; vLLM's `load_weights` maps them onto its fused layers (e.g. q/k/v into `qkv_proj`) and shards
them for tensor parallelism.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch


def iter_safetensors(weight_dir: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of every `*.safetensors` file of `weight_dir`, one file in memory at a time."""
    from safetensors.torch import load_file

    for file in sorted(Path(weight_dir).glob("*.safetensors")):
        yield from load_file(file).items()


def retie_output_embeddings(model: torch.nn.Module) -> None:
    """Re-derives a tied LM head from the freshly loaded input embeddings.

    With tied embeddings no checkpoint tensor reaches the LM head, so vLLM's in-place reload leaves it on its
    load-time state: on CPU a GEMM handle packed from the *old* weights (vLLM 0.32 logs "Failed to load weights"
    for it), and the model keeps sampling from the old output embeddings.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    heads = [m for m in model.modules() if isinstance(m, ParallelLMHead)]
    embeds = [m for m in model.modules() if type(m) is VocabParallelEmbedding]
    if len(heads) != 1 or len(embeds) != 1:
        raise RuntimeError(f"cannot re-tie the LM head: {len(heads)} LM heads, {len(embeds)} input embeddings")
    head, embed = heads[0], embeds[0]
    head.weight = embed.weight
    head.quant_method.process_weights_after_loading(head)


class WeightLoaderExtension:
    """Methods prefixed `prime_rl_` so they never clash with the worker's own (vLLM asserts that)."""

    def prime_rl_load_weight_dir(self, weight_dir: str) -> None:
        """Loads `weight_dir/*.safetensors` (HF names, checked by the server beforehand) into the model in place."""
        self.reload_weights(weights_iterator=iter_safetensors(weight_dir), is_checkpoint_format=True)
        self._prime_rl_after_reload()

    def prime_rl_load_base_weights(self) -> None:
        """Reloads the served model's own checkpoint (policy step 0)."""
        self.reload_weights(is_checkpoint_format=True)
        self._prime_rl_after_reload()

    def _prime_rl_after_reload(self) -> None:
        if self.model_runner.model_config.hf_text_config.tie_word_embeddings:
            retie_output_embeddings(self.model_runner.get_model())
