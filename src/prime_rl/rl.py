"""`rl @ rl.toml`: validates the combined config, writes each process's resolved config to `output_dir/configs/`,
starts inference, trainer and orchestrator, shows a progress line, and stops everything if one of them fails."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.preflight import RunLock, check_port_free
from prime_rl.launcher.resume import pin_resume_step
from prime_rl.orchestrator.resume import discard_after, rewind_metrics
from prime_rl.utils.config import ConfigError, cli


def check_plugins(config: RLConfig) -> None:
    """Imports the custom loss, the advantage and the (eval) environments now, so a bad import path fails before
    start."""
    from prime_rl.orchestrator.advantage import setup_advantage_fn
    from prime_rl.trainer.rl.loss import setup_loss_fn

    setup_loss_fn(config.trainer.loss)
    setup_advantage_fn(config.orchestrator.advantage)
    for i, env in enumerate(config.orchestrator.env):
        _check_environment(f"orchestrator.env[{i}]", env.id, env.args)
    for i, env in enumerate(config.orchestrator.eval.env if config.orchestrator.eval else []):
        _check_environment(f"orchestrator.eval.env[{i}]", env.id, env.args)


def _check_environment(key: str, env_id: str, args: dict) -> None:
    from prime_rl.environments import load_environment

    try:
        load_environment(env_id, **args)
    except ConfigError as e:
        raise ConfigError(f"{key}: {e}") from None
    except Exception as e:
        raise ConfigError(f"{key} `{env_id}`: load_environment failed: {type(e).__name__}: {e}") from e


def check_model(name: str) -> None:
    """A name that can only be a local path (absolute, relative with a dot, or with 2+ slashes) must exist."""
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") >= 2
    if looks_local and not Path(name).expanduser().is_dir():
        raise ConfigError(f"`model.name` = {name!r} is not a directory (hub ids look like `org/name`)")


def render_configs(config: RLConfig) -> dict[str, str]:
    """`{process: TOML text}`; fails if a value cannot be expressed in TOML."""
    import tomli_w

    from prime_rl.launcher.config import SECTIONS

    texts = {}
    for name, cls in SECTIONS.items():
        section = getattr(config, name)
        data = section.model_dump(mode="json", exclude_none=True)
        # TOML has no null: a None that is not the default would silently become the default again.
        if cls.model_validate(data).model_dump() != section.model_dump():
            lost = sorted(_none_overrides(section))
            raise ConfigError(f"`{name}` fields set to None differ from their defaults and cannot be written: {lost}")
        texts[name] = tomli_w.dumps(data)
    return texts


def write_configs(config: RLConfig, configs_dir: Path) -> dict[str, Path]:
    """Writes `configs/{inference,orchestrator,trainer}.toml`."""
    from prime_rl.utils.fs import atomic_write_text

    paths = {}
    for name, text in render_configs(config).items():
        paths[name] = configs_dir / f"{name}.toml"
        atomic_write_text(paths[name], text)
    return paths


def _none_overrides(model, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    out = []
    for key, field in type(model).model_fields.items():
        value = getattr(model, key)
        if isinstance(value, BaseModel):
            out += _none_overrides(value, f"{prefix}{key}.")
        elif value is None and field.get_default(call_default_factory=True) is not None:
            out.append(f"{prefix}{key}")
    return out


def prepare_output_dir(config: RLConfig) -> Path:
    """Creates the run directory. A fresh start removes an earlier run's batches and policies (a new run must never
    read them) and, with `clean`, its metrics and logs."""
    output_dir = Path(config.orchestrator.output_dir)
    fresh = config.orchestrator.ckpt.resume_step is None and config.trainer.ckpt.resume_step is None
    if fresh:
        for name in ("rollouts", "broadcasts", *(("metrics", "logs") if config.clean else ())):
            shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in ("configs", "logs", "metrics"):
        (output_dir / name).mkdir(parents=True, exist_ok=True)
    return output_dir


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def config_dirs(argv: list[str]) -> tuple[str, ...]:
    """Directories of the TOML files on the command line: modules beside a config are importable by `import_path`."""
    from prime_rl.utils.config import split_argv

    try:
        files = split_argv(argv)[0]
    except ConfigError:  # reported by the config parser
        return ()
    return tuple(dict.fromkeys(str(path.resolve().parent) for path in files))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    python_path = config_dirs(argv) if "--help" not in argv and "-h" not in argv else ()
    sys.path[:0] = [p for p in python_path if p not in sys.path]
    config = cli(RLConfig, "rl", argv)
    try:
        # Everything that can fail is checked before the output directory is touched.
        check_model(config.trainer.model.name)
        check_plugins(config)
        resume_step = pin_resume_step(config)
        render_configs(config)
        lock = RunLock(Path(config.orchestrator.output_dir))
        check_port_free(config.inference.server.host, config.inference.server.port)
        output_dir = prepare_output_dir(config)
        paths = write_configs(config, output_dir / "configs")
        if resume_step is not None:
            discard_after(output_dir, resume_step)
            rewind_metrics(output_dir / "metrics", resume_step)
    except ConfigError as e:
        print(f"rl: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    from prime_rl.launcher.supervise import supervise

    # Also when started with SIGINT ignored (e.g. `rl ... &` from a script): Ctrl-C / SIGINT / SIGTERM stop the run,
    # and so does SIGHUP (the terminal closed).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    start = time.monotonic()
    code = supervise(config, output_dir, paths, python_path, keep_fds=(lock.fd,))
    outcome = {0: "finished", 130: "interrupted"}.get(code, "failed")
    print(f"rl: {outcome} after {time.monotonic() - start:.0f}s", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
