"""FSDP2 data parallelism under `torchrun` (docs/scaling.md): the process group, the sharded model, the step's
micro-batches spread over the ranks, and what the ranks reduce or write together.

Without `torchrun` (no `RANK`/`WORLD_SIZE` in the environment) nothing here initialises anything: `World()` is the
single process and the model is not wrapped, so the single-process path is today's.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.elastic.multiprocessing.errors import record
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    fully_shard,
    register_fsdp_forward_method,
)

from prime_rl.trainer.config import ParallelConfig
from prime_rl.trainer.logprobs import packed_logprobs
from prime_rl.trainer.packing import MicroBatch
from prime_rl.utils.device import get_device
from prime_rl.utils.fs import stable_dir
from prime_rl.utils.logger import get_logger

P = ParamSpec("P")
R = TypeVar("R")
LOGPROBS_METHOD = "packed_logprobs"
"""The sharded model's method running `packed_logprobs` inside FSDP's root forward hooks (see `shard_model`)."""


@dataclass(frozen=True)
class World:
    """This process's place among the trainer's ranks (`World()`: one process, no process group)."""

    rank: int = 0
    size: int = 1
    local_size: int = 1
    """Ranks on this machine."""
    distributed: bool = False
    """A process group is initialised (under torchrun, even with one rank)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def current() -> World:
        if not (dist.is_available() and dist.is_initialized()):
            return World()
        local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
        return World(dist.get_rank(), dist.get_world_size(), local, distributed=True)


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup_world(device_name: str) -> World:
    """Initialises the process group under torchrun (NCCL on CUDA, gloo on CPU, from the model's device)."""
    if not under_torchrun():
        return World()
    device = get_device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(teardown_world)
    return World.current()


def record_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, whose exception torchrun's failure summary shows (torchrun's `record`) when it runs under torchrun."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return record(fn)(*args, **kwargs) if under_torchrun() else fn(*args, **kwargs)

    return wrapper


def teardown_world() -> None:
    """Leaves the process group (registered at exit by `setup_world`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers, found by the class names HF lists in `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no decoder layers to shard (no module in _no_split_modules)")
    return layers


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def shard_model(model: torch.nn.Module, config: ParallelConfig, world: World, device_type: str) -> torch.nn.Module:
    """FSDP2: each decoder layer, then the root (embeddings, final norm and the LM head, tied or not, in one group).

    Gradients are summed over ranks, not averaged: every rank's loss is already divided by the loss tokens of the
    whole step, so the sum is the single-process gradient.
    """
    kwargs: dict[str, Any] = {"mesh": device_mesh(device_type, config.shard_size, world)}
    if device_type == "cuda":
        if config.mixed_precision == "bfloat16":
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if config.cpu_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy()
    elif config.cpu_offload or config.mixed_precision != "none":
        get_logger("trainer").info("parallel.cpu_offload and parallel.mixed_precision apply on CUDA only")
    for layer in decoder_layers(model):
        fully_shard(layer, reshard_after_forward=config.reshard_after_forward, **kwargs)
    fully_shard(model, **kwargs)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no PREMUL_SUM)
    # packed_logprobs runs the decoder and the LM head outside `model.forward`: registered as a forward method, it
    # gathers the root's parameters (embeddings, head) around the whole computation.
    setattr(model, LOGPROBS_METHOD, packed_logprobs.__get__(model))
    register_fsdp_forward_method(model, LOGPROBS_METHOD)
    return model


def device_mesh(device_type: str, shard_size: int | None, world: World):
    """1-D mesh over all ranks, or 2-D (replicate, shard) for HSDP when `shard_size` is smaller than the world."""
    shard = shard_size or world.size
    if world.size % shard:
        raise ValueError(f"parallel.shard_size = {shard_size} does not divide the {world.size} trainer ranks")
    if shard == world.size:
        return init_device_mesh(device_type, (world.size,), mesh_dim_names=("shard",))
    return init_device_mesh(device_type, (world.size // shard, shard), mesh_dim_names=("replicate", "shard"))


def assign_micro_batches(num_tokens: list[int], num_ranks: int) -> list[list[int]]:
    """Micro-batch indices of each rank, balanced by tokens: longest first, each to the least-loaded rank."""
    loads = [0] * num_ranks
    assigned: list[list[int]] = [[] for _ in range(num_ranks)]
    for i in sorted(range(len(num_tokens)), key=lambda i: (-num_tokens[i], i)):
        rank = min(range(num_ranks), key=lambda r: (loads[r], len(assigned[r]), r))
        assigned[rank].append(i)
        loads[rank] += num_tokens[i]
    return [sorted(indices) for indices in assigned]


def rank_micro_batches(micro_batches: list[MicroBatch], world: World) -> tuple[list[MicroBatch], int]:
    """This rank's micro-batches and how many empty passes pad it to the busiest rank's count: every rank runs the
    same number of forward/backward passes (and so of FSDP collectives), at least one."""
    assigned = assign_micro_batches([mb.num_tokens for mb in micro_batches], world.size)
    passes = max(1, *(len(a) for a in assigned))
    mine = [micro_batches[i] for i in assigned[world.rank]]
    return mine, passes - len(mine)


def padding_pass(model: torch.nn.Module, chunk_size: int, device: torch.device) -> None:
    """Forward and backward of one token with no loss token: the collectives of a micro-batch, a zero gradient."""
    token = torch.zeros(1, dtype=torch.long, device=device)
    logprobs, _ = getattr(model, LOGPROBS_METHOD)(
        token,
        token,
        torch.ones(1, device=device),
        [1],
        chunk_size,
        only=torch.zeros(1, dtype=torch.bool, device=device),
    )
    logprobs.sum().backward()


def reduce_step(loss: float, metrics: dict[str, list[Tensor]]) -> tuple[float, dict[str, list[Tensor]]]:
    """The step's loss summed over ranks and every rank's metric values (in rank order), on every rank."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (loss, metrics))
    total, merged = 0.0, {}
    for rank_loss, rank_metrics in gathered:
        total += rank_loss
        for name, values in rank_metrics.items():
            merged.setdefault(name, []).extend(values)
    return total, merged


def main_decides(value: bool) -> bool:
    """Rank 0's `value` on every rank (a decision read from the filesystem, which other ranks may see later)."""
    if not World.current().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def gather_weights(model: torch.nn.Module) -> dict[str, Tensor] | None:
    """The full state dict of a sharded model, without tied duplicates (the first name wins), gathered on rank 0's
    CPU; None on the other ranks. A collective: every rank calls it."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not World.current().is_main:
        return None
    keep = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    return {name: t for name, t in state.items() if name in keep}


@contextlib.contextmanager
def shared_stable_dir(path: Path) -> Iterator[Path]:
    """`stable_dir` written by every rank: rank 0 creates the temporary directory and, once all ranks are done,
    renames it and writes `STABLE`."""
    world = World.current()
    if not world.distributed:
        with stable_dir(path) as tmp:
            yield tmp
        return
    if world.is_main:
        with stable_dir(path) as tmp:
            dist.broadcast_object_list([tmp], src=0)
            yield tmp
            dist.barrier()
        return
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    yield box[0]
    dist.barrier()
