"""`RLConfig`: the one file that configures inference, orchestrator and trainer for `rl @ rl.toml`.

Shared top-level fields are pushed down into the sub-configs unless set there (`pushdown.py`); a sub-config value
that contradicts the shared one, or two sub-configs that disagree, is an error. Everything is validated before any
process starts.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from prime_rl.inference.config import InferenceConfig, ServerConfig
from prime_rl.inference.engines.vllm_lora import VLLM_LORA_RANKS
from prime_rl.orchestrator.config import OrchestratorConfig, OrchestratorWandbConfig
from prime_rl.trainer.config import LoRAConfig
from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.utils.config import BaseConfig, BaseSettingsConfig
from prime_rl.utils.config.pushdown import MISSING, copy_unset, get_dotted, has_field, push_down, set_dotted
from prime_rl.utils.config.sections import CkptConfig, ModelConfig
from prime_rl.utils.threads import split_threads

SECTIONS = {"inference": InferenceConfig, "orchestrator": OrchestratorConfig, "trainer": RLTrainerConfig}

SHARED = {
    "model.name": ["orchestrator", "trainer", "inference"],
    "model.lora": ["trainer"],
    "output_dir": ["orchestrator", "trainer", "inference"],
    "max_steps": ["orchestrator", "trainer"],
    "max_async_level": ["orchestrator", "trainer"],
    "seq_len": ["orchestrator", "trainer"],
    "ckpt.interval": ["orchestrator", "trainer"],
    "ckpt.resume_step": ["orchestrator", "trainer"],
    "ckpt.keep_last": ["orchestrator", "trainer"],
    **{f"wandb.{key}": ["orchestrator", "trainer"] for key in OrchestratorWandbConfig.model_fields},
}
"""Shared key → the sections it is pushed into, in the order whose first default wins when nobody sets it."""


class RLModelConfig(ModelConfig):
    """The shared `[model]`: its name for every process, and LoRA for the trainer."""

    lora: LoRAConfig | None = None
    """LoRA adapters (`[model.lora]`, pushed into `trainer.model.lora`): the trainer trains and broadcasts only them,
    the HF inference engine merges them into its base weights, the vLLM engine serves them with its LoRA support
    (`inference.vllm.max_lora_rank` follows `rank`); None: full fine-tuning."""


class RLConfig(BaseSettingsConfig):
    """`rl`: starts inference, orchestrator and trainer from one config and watches them until training ends."""

    # Partial updates would deep-merge a section's default tables into the input, so a `[trainer.loss]` with
    # another `type` would inherit the default loss's keys.
    model_config = SettingsConfigDict(
        **{**BaseSettingsConfig.model_config, "nested_model_default_partial_update": False}
    )

    inference: InferenceConfig = InferenceConfig()
    """The inference server (`inference @ ...` when run alone)."""
    orchestrator: OrchestratorConfig = OrchestratorConfig()
    """The orchestrator (`orchestrator @ ...` when run alone)."""
    trainer: RLTrainerConfig = RLTrainerConfig()
    """The RL trainer (`trainer @ ...` when run alone)."""
    teacher: InferenceConfig | None = None
    """A teacher server `rl` starts beside the inference server(s) (`[teacher]`, e.g. `model.name`; its port follows
    theirs unless `server.port` is set); `[orchestrator.teacher]` then points at it (docs/algorithms.md)."""
    model: RLModelConfig = RLModelConfig()
    """Shared model (`model.name` is pushed into `trainer.model`, `orchestrator.model` and `inference.model`,
    `model.lora` into `trainer.model`)."""
    output_dir: Path | None = None
    """Shared run directory (default `outputs`)."""
    max_steps: int | None = Field(None, ge=1)
    """Shared number of training steps."""
    max_async_level: int | None = Field(None, ge=0)
    """Shared async level: the batch of step N may come from policy N - max_async_level or newer."""
    seq_len: int | None = Field(None, ge=1)
    """Shared maximum sample length in tokens (prompt + completion)."""
    ckpt: CkptConfig = CkptConfig()
    """Shared checkpointing, pushed into `trainer.ckpt` and `orchestrator.ckpt`."""
    wandb: OrchestratorWandbConfig | None = None
    """Shared W&B run (`[wandb]`), pushed into `trainer.wandb` and `orchestrator.wandb`: both log to one run."""
    clean: bool = True
    """On a fresh start, also delete an earlier run's `metrics/` and `logs/` (its rollouts and broadcasts always go)."""
    health_timeout: float = Field(600.0, gt=0)
    """Seconds to wait for the inference server's `/health` before giving up."""
    tail_lines: int = Field(30, ge=1)
    """Lines of a failed process's log printed to the console."""

    def __init__(self, **values: Any):
        # Push-down must see only what the user gave (TOML + CLI), before pydantic-settings fills in defaults.
        values = push_down(values, SHARED, SECTIONS)
        _derive_defaults(values)
        super().__init__(**values)

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        for key, targets in SHARED.items():
            targets = [t for t in targets if has_field(SECTIONS[t], key)]
            values = [get_dotted(getattr(self, t).model_dump(), key) for t in targets]
            if len({str(v) for v in values}) > 1:  # only defaults differ here: the first section's default wins
                for target in targets[1:]:
                    _assign(getattr(self, target), key, values[0])
        if self.teacher is not None:
            if self.teacher.num_servers != 1:
                raise ValueError(f"teacher.num_servers = {self.teacher.num_servers}: rl starts one teacher server")
            self.teacher.output_dir = self.orchestrator.output_dir
        if self.trainer.model.lora is not None and self.inference.engine == "vllm":
            _serve_lora_on_vllm(self)
        return self


def _serve_lora_on_vllm(config: RLConfig) -> None:
    """The vLLM servers take the trainer's adapters: `inference.vllm.max_lora_rank` follows `model.lora.rank` unless
    set, and then must reach it."""
    rank, vllm = config.trainer.model.lora.rank, config.inference.vllm
    if rank > VLLM_LORA_RANKS[-1]:
        raise ValueError(f"`model.lora.rank` = {rank}: the vLLM engine serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}")
    if vllm.max_lora_rank is None:
        vllm.max_lora_rank = rank
    elif vllm.max_lora_rank < rank:
        raise ValueError(f"`inference.vllm.max_lora_rank` = {vllm.max_lora_rank} is below `model.lora.rank` = {rank}")


def _derive_defaults(data: dict) -> None:
    """Values that follow from the other sections unless set: the server URL and key, thread split, log files."""
    inference, orchestrator, trainer = data["inference"], data["orchestrator"], data["trainer"]
    if get_dotted(orchestrator, "client.base_url") is MISSING:
        host = get_dotted(inference, "server.host")
        host = "127.0.0.1" if host in (MISSING, "0.0.0.0", "::") else host
        port = _as_int(get_dotted(inference, "server.port"), ServerConfig().port)
        count = _as_int(get_dotted(inference, "num_servers"), 1)
        set_dotted(orchestrator, "client.base_url", [f"http://{host}:{port + i}/v1" for i in range(count)])
    copy_unset(data, "inference.server.api_key", "orchestrator.client.api_key")
    _share_wandb_run(data)
    infer_threads, train_threads = split_threads()
    inference.setdefault("num_threads", infer_threads)
    _derive_teacher(data, infer_threads)
    trainer.setdefault("num_threads", train_threads)
    # `rl` captures each process's console output into logs/<process>.log; a second writer would duplicate it.
    for section in (inference, orchestrator, trainer):
        if get_dotted(section, "log.file") is MISSING:
            set_dotted(section, "log.file", False)


def _derive_teacher(data: dict, threads: int) -> None:
    """With a `[teacher]` table: its port follows the inference servers' unless set, and `[orchestrator.teacher]`
    reaches it (URL, model name, API key) unless set there."""
    teacher = data.get("teacher")
    if teacher is None:
        return
    teacher = data["teacher"] = teacher.model_dump(exclude_unset=True) if isinstance(teacher, BaseModel) else teacher
    inference = data["inference"]
    if get_dotted(teacher, "server.port") is MISSING:
        port = _as_int(get_dotted(inference, "server.port"), ServerConfig().port)
        set_dotted(teacher, "server.port", port + _as_int(get_dotted(inference, "num_servers"), 1))
    teacher.setdefault("num_threads", threads)
    if get_dotted(teacher, "log.file") is MISSING:
        set_dotted(teacher, "log.file", False)
    orchestrator = data["orchestrator"]
    if orchestrator.get("teacher") is None:
        orchestrator["teacher"] = {}
    if get_dotted(orchestrator, "teacher.client.base_url") is MISSING:
        set_dotted(orchestrator, "teacher.client.base_url", [f"{teacher_url(teacher)}/v1"])
    if get_dotted(orchestrator, "teacher.model.name") is MISSING:
        name = get_dotted(teacher, "model.name")
        set_dotted(orchestrator, "teacher.model.name", ModelConfig().name if name is MISSING else name)
    copy_unset(data, "teacher.server.api_key", "orchestrator.teacher.client.api_key")


def teacher_url(teacher: dict | InferenceConfig) -> str:
    """The root URL of the teacher server `rl` starts (a dict: the raw `[teacher]` table)."""
    server = teacher.get("server", {}) if isinstance(teacher, dict) else teacher.server.model_dump()
    host = server.get("host", ServerConfig().host)
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{_as_int(server.get('port'), ServerConfig().port)}"


def _share_wandb_run(data: dict) -> None:
    """With a `[wandb]` table, trainer and orchestrator both log, to the run id given or generated here."""
    if data.get("wandb") is None:
        return
    if get_dotted(data, "wandb.id") is MISSING:
        set_dotted(data, "wandb.id", secrets.token_hex(4))
    for name in ("orchestrator", "trainer"):
        if data[name].get("wandb") is None:
            data[name]["wandb"] = {}
        data[name]["wandb"].setdefault("id", data["wandb"]["id"])


def _as_int(value: Any, default: int) -> int:
    """A CLI/TOML integer (CLI values arrive as strings); anything else is left for validation to report."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _assign(model: BaseConfig, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        model = getattr(model, key)
    setattr(model, last, value)
