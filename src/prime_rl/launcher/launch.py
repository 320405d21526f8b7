"""What `rl` does once its config parsed: checks everything that can fail (model, plug-ins, environments, resume
step) before the output directory is touched, writes each process's resolved config to `output_dir/configs/`,
then starts and watches inference, trainer and orchestrator."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from prime_rl.launcher.config import SECTIONS, RLConfig
from prime_rl.launcher.fork import call_in_fork
from prime_rl.launcher.preflight import RunLock, check_port_free
from prime_rl.launcher.resume import pin_resume_step
from prime_rl.launcher.supervise import supervise
from prime_rl.run_dir import RunDir
from prime_rl.utils.config.dump import config_toml
from prime_rl.utils.fs import atomic_write_text
from prime_rl.utils.threads import check_threads


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
    # Everything that can fail is checked before the output directory is touched; in a child process, so the torch
    # and transformers the checks import never occupy `rl`'s memory during the run.
    call_in_fork("prime_rl.launcher.checks:run_checks", config)
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
