"""The checks `rl` runs before it touches the output directory: the model path, the teacher, the plug-ins (custom loss,
advantage, environments) and the prompt lengths. They import torch and transformers; `launch.py` forks for them."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from prime_rl.chat.render import render_chat
from prime_rl.environments import load_environment
from prime_rl.environments.base import Environment
from prime_rl.launcher.config import RLConfig
from prime_rl.orchestrator.advantage import setup_advantage_fn
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.utils.config import ConfigError, config_key
from prime_rl.utils.models import resolve_model_path


def run_checks(config: RLConfig) -> None:
    """Every check, in order; the first failure raises a ConfigError naming its key and file."""
    check_model(config)
    check_teacher(config)
    check_lora_targets(config)
    check_prompt_lengths(config, check_plugins(config))


def check_plugins(config: RLConfig) -> list[Environment]:
    """Imports the custom loss, the advantage and the (eval) environments now, so a bad import path fails before
    start, naming its key and the file (or command line) that set it; returns the training environments."""
    with config_key(config, "trainer.loss"):
        setup_loss_fn(config.trainer.loss)
    with config_key(config, "orchestrator.advantage"):
        setup_advantage_fn(config.orchestrator.advantage)
    envs = [
        check_environment(config, f"orchestrator.env[{i}]", e.id, e.args) for i, e in enumerate(config.orchestrator.env)
    ]
    for i, env in enumerate(config.orchestrator.eval.env if config.orchestrator.eval else []):
        check_environment(config, f"orchestrator.eval.env[{i}]", env.id, env.args)
    return envs


def check_environment(config: RLConfig, key: str, env_id: str, args: dict) -> Environment:
    with config_key(config, key):
        try:
            return load_environment(env_id, **args)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"`{env_id}`: load_environment failed: {type(e).__name__}: {e}") from e


def check_prompt_lengths(config: RLConfig, envs: list[Environment], max_examples: int = 512) -> None:
    """Every training environment must have a prompt that leaves room for one completion token in `seq_len` and in
    the server's `max_model_len`; otherwise every sample is masked out and the trainer dies later with an empty
    batch. Prompts are rendered as the server renders them, without tools (tools only add tokens)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.orchestrator.model.name))
    limits = {"seq_len": config.trainer.seq_len, "inference.model.max_model_len": config.inference.model.max_model_len}
    for i, (env, env_config) in enumerate(zip(envs, config.orchestrator.env, strict=True)):
        key = f"orchestrator.env[{i}]"
        examples = env.dataset()[:max_examples]
        if not examples:
            raise ConfigError(f"{config.source_of(key)}: `{key}` ({env_config.id}) has no training examples")
        shortest = min(len(render_chat(tokenizer, e.prompt)) for e in examples)
        for name, limit in limits.items():
            if limit is not None and shortest >= limit:
                raise ConfigError(
                    f"{config.source_of(name)}: `{name}` = {limit} leaves no room for a completion: the shortest "
                    f"prompt of `{key}` ({env_config.id}) has {shortest} tokens"
                )


def check_model(config: RLConfig) -> None:
    """A name that can only be a local path (absolute, relative with a dot, or with 2+ slashes) must exist."""
    name = config.trainer.model.name
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") >= 2
    if looks_local and not Path(name).expanduser().is_dir():
        where = config.source_of("model.name")
        raise ConfigError(f"{where}: `model.name` = {name!r} is not a directory (hub ids look like `org/name`)")


def check_teacher(config: RLConfig) -> None:
    """`teacher_tau > 0` needs a teacher: without one the teacher term would silently be zero. A teacher `rl` starts
    must share the policy's tokenizer, since it scores the policy's token ids as they are."""
    if config.trainer.needs_teacher and config.orchestrator.teacher is None:
        tau = config.trainer.loss.teacher_tau
        raise ConfigError(
            f"{config.source_of('trainer.loss.teacher_tau')}: `trainer.loss.teacher_tau` = {tau} needs a teacher: "
            "add a `[teacher]` table (rl starts that server) or `[orchestrator.teacher]` (a running server)"
        )
    if config.teacher is not None:
        policy = AutoTokenizer.from_pretrained(resolve_model_path(config.orchestrator.model.name))
        teacher = AutoTokenizer.from_pretrained(resolve_model_path(config.teacher.model.name))
        if policy.get_vocab() != teacher.get_vocab():
            raise ConfigError(
                f"{config.source_of('teacher.model.name')}: `teacher.model.name` = {config.teacher.model.name!r} "
                f"has another tokenizer than the policy {config.orchestrator.model.name!r}; a teacher must share it"
            )


def check_lora_targets(config: RLConfig) -> None:
    """`model.lora.target_modules` against the model's modules, built on the meta device (no weights loaded)."""
    lora = config.trainer.model.lora
    if lora is None or isinstance(lora.target_modules, str):
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from prime_rl.trainer.lora import check_targets
    from prime_rl.utils.models import resolve_model_path

    try:
        model_config = AutoConfig.from_pretrained(resolve_model_path(config.trainer.model.name))
    except OSError:
        return  # an unreachable hub id: the trainer reports it
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    try:
        check_targets(model, lora.target_modules)
    except ConfigError as e:
        raise ConfigError(f"{config.source_of('model.lora.target_modules')}: {e}") from None
