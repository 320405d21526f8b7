"""Runs the three processes of `rl` (and a teacher server) and watches them: the run succeeds when trainer and
orchestrator both exit 0 (the orchestrator may still evaluate the final policy after the trainer is done); any other
exit (or a non-zero one) stops the rest, prints the failing process's last log lines and how to resume.
Nothing is restarted silently."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from prime_rl.client import InferenceClient, InferenceError
from prime_rl.launcher.config import RLConfig, teacher_url
from prime_rl.launcher.processes import Child, ProcessSpec, stop_all, tail
from prime_rl.launcher.progress import Progress, show
from prime_rl.launcher.resume import latest_resumable
from prime_rl.run_dir import RunDir
from prime_rl.trainer.config import rank_threads
from prime_rl.utils.logger import get_logger, setup_logger

MODULES = {
    "inference": "prime_rl.inference.cli",
    "trainer": "prime_rl.trainer.rl.cli",
    "orchestrator": "prime_rl.orchestrator.cli",
}
POLL_SECONDS = 0.5


def process_specs(
    config: RLConfig, output_dir: Path, paths: dict[str, Path], python_path: tuple[str, ...] = ()
) -> dict[str, ProcessSpec]:
    """`inference` (and `inference_1`, ... with `inference.num_servers`), `teacher` (with `[teacher]`), `trainer`,
    `orchestrator`."""
    ranks = config.trainer.num_processes
    trainer_threads = rank_threads(config.trainer.num_threads, ranks)
    threads = {"inference": config.inference.num_threads, "trainer": trainer_threads, "orchestrator": 1}
    run = RunDir(output_dir)
    specs = {}
    for name in MODULES:
        spec = ProcessSpec(name, MODULES[name], paths[name], run.log(name), threads[name], python_path)
        specs.update(inference_specs(config, spec) if name == "inference" else {name: spec})
    specs["trainer"].num_processes = ranks
    if config.teacher is not None:
        specs["teacher"] = ProcessSpec(
            "teacher",
            MODULES["inference"],
            paths["teacher"],
            run.log("teacher"),
            config.teacher.num_threads,
            python_path,
        )
    return specs


def inference_specs(config: RLConfig, first: ProcessSpec) -> dict[str, ProcessSpec]:
    """One spec per inference server: server `i` listens on `server.port + i` and sees its own
    `tensor_parallel_size` GPUs (a slice of `inference.gpu_ids`, else of `CUDA_VISIBLE_DEVICES` or 0, 1, ...)."""
    inference = config.inference
    count = inference.num_servers
    if count == 1 and inference.gpu_ids is None:
        return {first.name: first}
    per_server = inference.vllm.tensor_parallel_size if inference.engine == "vllm" else 1
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inference.gpu_ids is not None:
        devices = [str(d) for d in inference.gpu_ids]
    else:
        devices = visible.split(",") if visible else [str(d) for d in range(count * per_server)]
    specs = {}
    for i in range(count):
        name = "inference" if i == 0 else f"inference_{i}"
        mine = devices[i * per_server : (i + 1) * per_server]
        specs[name] = ProcessSpec(
            name,
            first.module,
            first.config_path,
            first.log_path.with_name(f"{name}.log"),
            first.threads,
            first.python_path,
            args=("--server.port", str(inference.server.port + i)),
            env=(("CUDA_VISIBLE_DEVICES", ",".join(mine)),) if mine else (),
        )
    return specs


def server_urls(config: RLConfig) -> list[str]:
    """The root URL of every inference server (`server.port + i`), then of the teacher server."""
    host = config.inference.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    port = config.inference.server.port
    teacher = [teacher_url(config.teacher)] if config.teacher is not None else []
    return [f"http://{host}:{port + i}" for i in range(config.inference.num_servers)] + teacher


def report_failure(child: Child, code: int, lines: int) -> None:
    logger = get_logger("rl")
    header = f"{child.name} exited with code {code}; last lines of {child.spec.log_path}:"
    logger.error(header)
    print(f"\nrl: {header}", file=sys.stderr)
    for line in tail(child.spec.log_path, lines):
        print(f"  | {line}", file=sys.stderr)


def report_resume(output_dir: Path) -> None:
    """Tells how to continue: `rl` never restarts a process by itself."""
    step = latest_resumable(output_dir)
    hint = (
        "no complete checkpoint to resume from"
        if step is None
        else (f"resume from the latest complete checkpoint (step {step}) with `--ckpt.resume-step -1`")
    )
    get_logger("rl").error(hint)
    print(f"rl: {hint}", file=sys.stderr)


def wait_healthy(url: str, timeout: float, children: list[Child]) -> Child | None:
    """`InferenceClient.wait_healthy` of the server at `url`; a child that failed meanwhile, or None when healthy.
    A trainer that exits 0 has not failed: resumed after its last step, it has nothing to train."""

    def dead() -> Child | None:
        servers_or_failed = (c for c in children if (code := c.poll()) is not None and (code or c.name != "trainer"))
        return next(servers_or_failed, None)

    async def wait() -> None:
        client = InferenceClient([url], model="", timeout=2.0)
        try:
            await client.wait_healthy(timeout, alive=lambda: dead() is None)
        finally:
            await client.close()

    asyncio.run(wait())
    return dead()


def watch(children: list[Child], progress: Progress, live: bool) -> tuple[Child | None, int]:
    """Until trainer and orchestrator both exited 0 → `(None, 0)`; or the first failure → `(child, exit code)`."""
    logger = get_logger("rl")
    # The console already shows the progress line: this logger writes it to logs/rl.log only.
    progress_log = logging.getLogger("prime_rl.rl.progress")
    progress_log.propagate = False
    progress_log.handlers = [h for h in logging.getLogger("prime_rl").handlers if isinstance(h, logging.FileHandler)]
    finished: set[str] = set()
    while True:
        for child in children:
            code = child.poll()
            if code is None or child.name in finished:
                continue
            if code == 0 and child.name in ("orchestrator", "trainer"):
                finished.add(child.name)
                logger.info("%s finished", child.name)
                if finished == {"orchestrator", "trainer"}:
                    progress.update()
                    return None, 0
                continue
            return child, code if code != 0 else 1
        if progress.update():
            show(progress.line(), live)
            progress_log.info(progress.line())
        time.sleep(POLL_SECONDS)


def supervise(
    config: RLConfig,
    output_dir: Path,
    paths: dict[str, Path],
    python_path: tuple[str, ...] = (),
    keep_fds: tuple[int, ...] = (),
) -> int:
    """Starts inference and trainer, then (inference healthy) the orchestrator; returns the exit code of `rl`.
    Every child inherits `keep_fds` (the run directory's lock)."""
    logger = setup_logger("rl", "INFO", RunDir(output_dir).log("rl"))
    specs = process_specs(config, output_dir, paths, python_path)
    live = sys.stdout.isatty()
    children: list[Child] = []
    try:
        for name in [n for n in specs if n.startswith("inference") or n == "teacher"] + ["trainer"]:
            children.append(Child(specs[name], keep_fds=keep_fds))
            logger.info("started %s (pid %d), log %s", name, children[-1].popen.pid, specs[name].log_path)
        for url in server_urls(config):
            dead = wait_healthy(url, config.health_timeout, children)
            if dead is not None:
                report_failure(dead, dead.poll() or 1, config.tail_lines)
                report_resume(output_dir)
                return 1
        children.append(Child(specs["orchestrator"], keep_fds=keep_fds))
        logger.info("inference healthy; started orchestrator (pid %d)", children[-1].popen.pid)
        failed, code = watch(children, Progress(RunDir(output_dir), config.trainer.max_steps or 0), live)
        if live:
            print()
        if failed is not None:
            report_failure(failed, code, config.tail_lines)
            report_resume(output_dir)
            return 1
        logger.info("training finished: %d steps", config.trainer.max_steps)
        return 0
    except KeyboardInterrupt:
        logger.warning("interrupted: stopping all processes")
        return 130
    except InferenceError as e:  # not healthy within health_timeout
        logger.error(str(e))
        return 1
    finally:
        stop_all(children)
