"""Child processes of `rl`: started in their own session with output captured to a log file, stopped as a group, and
killed by the kernel (Linux) or their own watchdog (`utils/lifecycle.py`) when `rl` dies."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from prime_rl.utils.lifecycle import die_with_parent, launcher_env


@dataclass
class ProcessSpec:
    """How to start one process: `python -c "from <module> import main; main()" @ <config>`."""

    name: str
    module: str
    config_path: Path
    log_path: Path
    threads: int | None = None
    python_path: tuple[str, ...] = ()
    """Directories prepended to PYTHONPATH (the config files' directories, for `import_path` modules beside them)."""
    num_processes: int = 1
    """More than 1: `torchrun --standalone --nproc-per-node N` runs the module in N ranks (`threads` each)."""
    args: tuple[str, ...] = ()
    """CLI overrides after the config file (e.g. the port of a second inference server)."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment variables (e.g. the GPUs of one inference server)."""

    def command(self) -> list[str]:
        if self.num_processes > 1:
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            return [*torchrun, f"--nproc-per-node={self.num_processes}", "-m", self.module, "@", str(self.config_path)]
        code = f"import sys; sys.argv[0] = {self.name!r}; from {self.module} import main; main()"
        return [sys.executable, "-c", code, "@", str(self.config_path), *self.args]

    def environment(self) -> dict[str, str]:
        # The resolved TOML holds every value: PRIME_* variables meant for `rl` must not leak into the children.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
        if "PRIME_RL_CACHE" in os.environ:
            env["PRIME_RL_CACHE"] = os.environ["PRIME_RL_CACHE"]
        env["PYTHONUNBUFFERED"] = "1"
        env["TOKENIZERS_PARALLELISM"] = "false"
        if self.python_path:
            env["PYTHONPATH"] = os.pathsep.join([*self.python_path, *filter(None, [env.get("PYTHONPATH")])])
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        env.update(self.env)
        return launcher_env(env)


class Child:
    """A running process; its stdout and stderr go to `spec.log_path`; it inherits the descriptors `keep_fds` (the run
    directory's lock, held until the last process of the run exits)."""

    def __init__(self, spec: ProcessSpec, cwd: Path | None = None, keep_fds: tuple[int, ...] = ()):
        self.spec = spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = spec.log_path.open("ab")
        self.popen = subprocess.Popen(
            spec.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=spec.environment(),
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches only `rl`, which then stops the children in order
            preexec_fn=die_with_parent(),
            pass_fds=keep_fds,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    def poll(self) -> int | None:
        return self.popen.poll()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM to the process group, SIGKILL after `timeout` seconds; returns the exit code."""
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (empty if it does not exist)."""
    if not path.is_file():
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 200 * lines - 4096))
        text = f.read().decode(errors="replace")
    return text.splitlines()[-lines:]


def stop_all(children: list[Child], timeout: float = 10.0) -> None:
    """Stops the children in reverse start order (the consumers before the server they use)."""
    deadline = time.monotonic() + timeout
    for child in reversed(children):
        child.stop(max(0.5, deadline - time.monotonic()))
