"""What `rl` does once its config parsed: checks everything that can fail (model, plug-ins, environments, resume
step) before the output directory is touched, writes each process's resolved config to `output_dir/configs/`,
then starts and watches inference, trainer and orchestrator."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from transformers import AutoTokenizer

from prime_rl.chat.render import render_chat
from prime_rl.environments import load_environment
from prime_rl.environments.base import Environment
from prime_rl.launcher.config import SECTIONS, RLConfig
from prime_rl.launcher.preflight import RunLock, check_port_free
from prime_rl.launcher.resume import pin_resume_step
from prime_rl.launcher.supervise import supervise
from prime_rl.orchestrator.advantage import setup_advantage_fn
from prime_rl.run_dir import RunDir
from prime_rl.trainer.rl.loss import setup_loss_fn
from prime_rl.utils.config import ConfigError, config_key
from prime_rl.utils.config.dump import config_toml
from prime_rl.utils.fs import atomic_write_text
from prime_rl.utils.models import resolve_model_path
from prime_rl.utils.threads import check_threads


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


def check_model(config: RLConfig) -> None:
    """A name that can only be a local path (absolute, relative with a dot, or with 2+ slashes) must exist."""
    name = config.trainer.model.name
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") >= 2
    if looks_local and not Path(name).expanduser().is_dir():
        where = config.source_of("model.name")
        raise ConfigError(f"{where}: `model.name` = {name!r} is not a directory (hub ids look like `org/name`)")


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


def render_configs(config: RLConfig) -> dict[str, str]:
    """`{process: TOML text}` (and `teacher` with a `[teacher]` table); fails if a value cannot be expressed in
    TOML."""
    names = [*SECTIONS, *(["teacher"] if config.teacher is not None else [])]
    return {name: config_toml(getattr(config, name), name) for name in names}


def write_configs(config: RLConfig, output_dir: Path) -> dict[str, Path]:
    """Writes `configs/{inference,orchestrator,trainer}.toml` (and `teacher.toml`) under `output_dir`."""
    paths = {}
    for name, text in render_configs(config).items():
        paths[name] = RunDir(output_dir).config(name)
        atomic_write_text(paths[name], text)
    return paths


def prepare_output_dir(config: RLConfig, resume_step: int | None = None) -> Path:
    """Creates the run directory and applies the rules of `run_dir.py` while no process runs: a fresh start removes
    an earlier run's batches and policies (with `clean`, its metrics and logs); a resume from `resume_step` discards
    what the lost part of the run produced; both remove the temporary files of killed writers."""
    run = RunDir(config.orchestrator.output_dir)
    if config.orchestrator.ckpt.resume_step is None and config.trainer.ckpt.resume_step is None:
        run.clear_for_fresh_start(config.clean)
    elif resume_step is not None:
        run.discard_after(resume_step)
        run.rewind_metrics(resume_step)
    run.remove_temp()
    for path in (run.configs, run.logs, run.metrics_dir):
        path.mkdir(parents=True, exist_ok=True)
    return run.root


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def python_path(config: RLConfig) -> tuple[str, ...]:
    """Directories of the TOML files on the command line: modules beside a config are importable by `import_path`
    (here and in the three processes)."""
    return tuple(dict.fromkeys(str(path.resolve().parent) for path in config.config_files))


def check_thread_budget(config: RLConfig) -> int:
    """Threads of the compute processes on this machine (warned about when more than the cores `rl` may use)."""
    inference = config.inference
    total = (inference.num_threads or 1) * inference.num_servers + (config.trainer.num_threads or 1)
    return check_threads(total, "inference.num_threads x inference.num_servers + trainer.num_threads")


def launch(config: RLConfig) -> None:
    """Checks, prepares the output directory, runs the three processes; exits with `rl`'s code."""
    paths_on_path = python_path(config)
    sys.path[:0] = [p for p in paths_on_path if p not in sys.path]
    # Everything that can fail is checked before the output directory is touched.
    check_model(config)
    check_teacher(config)
    check_lora_targets(config)
    check_prompt_lengths(config, check_plugins(config))
    resume_step = pin_resume_step(config)
    render_configs(config)
    check_thread_budget(config)
    lock = RunLock(Path(config.orchestrator.output_dir))
    check_port_free(config.inference.server.host, config.inference.server.port)
    if config.teacher is not None:
        check_port_free(config.teacher.server.host, config.teacher.server.port, "teacher")
    output_dir = prepare_output_dir(config, resume_step)
    paths = write_configs(config, output_dir)
    # Also when started with SIGINT ignored (e.g. `rl ... &` from a script): Ctrl-C / SIGINT / SIGTERM stop the run,
    # and so does SIGHUP (the terminal closed).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    start = time.monotonic()
    code = supervise(config, output_dir, paths, paths_on_path, keep_fds=(lock.fd,))
    outcome = {0: "finished", 130: "interrupted"}.get(code, "failed")
    print(f"rl: {outcome} after {time.monotonic() - start:.0f}s", file=sys.stderr)
    raise SystemExit(code)
