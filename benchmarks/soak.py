"""Kill-and-resume soak: random SIGKILLs of any of the four processes of a tiny-model `rl` run (`rl` itself,
inference, orchestrator, trainer), each followed by `rl ... --ckpt.resume-step -1` (a fresh start before the first
checkpoint), until the runs finish; then the next run starts.

    python benchmarks/soak.py [--kills 100] [--seed 0] [--max-minutes 240] [--steps 8] [--dir DIR]

After a kill of `rl`, no process of the run may be alive 5 s later; after a kill of a child, `rl` must exit 1 naming
it and leave nothing alive. Survivors count as orphans (and are then killed). Every finished run must have trained
exactly once (`read_history` in `launcher/history.py`). Two kills in three wait for a step trained by the
current launch first, so they land during training, not only during start-up. After `--kills` kills (or
`--max-minutes`) the current run is finished without kills and checked.

There is no baseline to compare with: the figure is the number of kills survived with zero faults. The line before
the last counts the rest (digest mismatches, out-of-order records, failures without a cause, wall time); the last is
`kills: K, runs: R, lost steps: L, duplicated: D, orphans: O`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from prime_rl.utils.net import free_port

REPO = Path(__file__).resolve().parents[1]
VICTIMS = ("rl", "inference", "orchestrator", "trainer")
ORPHAN_SECONDS = 5.0
STOP_SECONDS = 30.0  # `rl` gives each remaining child 10 s to stop before it SIGKILLs it
STALL_SECONDS = 900.0  # no launch of a tiny run takes this long, even on a loaded machine


def write_config(run_dir: Path, model_dir: Path, steps: int, async_level: int) -> Path:
    port = free_port()
    path = run_dir / "rl.toml"
    path.write_text(
        f'output_dir = "{run_dir / "out"}"\nmax_steps = {steps}\nmax_async_level = {async_level}\nseq_len = 128\n'
        f'[model]\nname = "{model_dir}"\n[ckpt]\ninterval = 1\n[inference.server]\nport = {port}\n'
        "[orchestrator]\nbatch_size = 4\nrollouts_per_example = 2\n[orchestrator.sampling]\nmax_tokens = 8\n"
        '[[orchestrator.env]]\nid = "one-word"\n[trainer.optim]\nlr = 1e-3\n'
    )
    return path


def descendants(root: int) -> dict[int, str]:
    """`{pid: name}` of every process below `root` (name: the `rl` process it is, else its command's first word)."""
    from prime_rl.utils import lifecycle

    return {pid: _name(pid) for pid in lifecycle.descendants(root)}


def _name(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    return next((v for v in VICTIMS[1:] if f"sys.argv[0] = '{v}'" in cmdline), cmdline.split("\0")[0])


def trained_since(out: Path, t0: float) -> bool:
    """Whether the trainer logged a step after wall-clock time `t0` (this launch trained)."""
    from prime_rl.utils.metrics import read_metrics

    path = out / "metrics" / "trainer.jsonl"
    try:
        return any(r["time"] >= t0 for r in read_metrics(path)[-1:])
    except (FileNotFoundError, ValueError):  # not there yet, or a line being written
        return False


def wait(proc: subprocess.Popen, seconds: float, until=lambda: False) -> bool:
    """Polls until `until()` holds or `proc` exits (True), or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and not until():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop(proc: subprocess.Popen, pids: list[int]) -> None:
    """Ends a stalled launch or orphans: `rl` and the processes it started (by pid)."""
    for pid in [proc.pid, *pids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def fail(tally: Counter, what: str, log: Path) -> str:
    tally["failures"] += 1
    tail = log.read_text(errors="replace").splitlines()[-15:]
    print(f"  FAILURE: {what}\n" + "\n".join(f"    | {line}" for line in tail), flush=True)
    return "failed"


def kill_one(proc: subprocess.Popen, log: Path, rng: random.Random, tally: Counter) -> str:
    """SIGKILLs `rl` or one of its live children and checks the aftermath; 'killed', 'finished' or 'failed'."""
    from prime_rl.utils.lifecycle import alive, alive_after

    procs = descendants(proc.pid)
    victim = rng.choice(["rl", *sorted({name for p, name in procs.items() if name in VICTIMS and alive(p)})])
    pid = proc.pid if victim == "rl" else next(p for p, name in procs.items() if name == victim)
    with contextlib.suppress(ProcessLookupError):  # a child that finished its part since
        os.kill(pid, signal.SIGKILL)
    if not wait(proc, STOP_SECONDS):
        stop(proc, list(procs))
        return fail(tally, f"rl did not stop within {STOP_SECONDS:.0f} s after {victim} was killed", log)
    if proc.returncode == 0:  # the run finished before the signal landed
        return "finished"
    survivors = alive_after(list(procs), ORPHAN_SECONDS if victim == "rl" else 1.0)
    tally.update(kills=1, orphans=len(survivors))
    metrics = log.parent / "out" / "metrics" / "trainer.jsonl"
    steps = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
    print(f"kill {tally['kills']}: {victim} (pid {pid}) after {steps} steps, orphans {len(survivors)}", flush=True)
    if survivors:
        print(f"  ORPHANS: {[(p, procs[p]) for p in survivors]}", flush=True)
        stop(proc, survivors)
    expected = (-9, "") if victim == "rl" else (1, f"rl: {victim} exited with code -9")
    if proc.returncode != expected[0] or expected[1] not in log.read_text(errors="replace"):
        return fail(tally, f"rl exited with {proc.returncode} after {victim} was killed", log)
    return "killed"


def launch(config: Path, resume: bool, rng: random.Random, tally: Counter, kill: bool) -> str:
    """One `rl` launch, SIGKILLed at a random moment (with `kill`) or left to finish; see `kill_one`."""
    out, log = config.parent / "out", config.parent / "rl.stderr"
    cmd = [sys.executable, "-m", "prime_rl.rl", "@", str(config), *(["--ckpt.resume-step", "-1"] if resume else [])]
    t0 = time.time()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, cwd=config.parent)
    if not kill:
        progressed = wait(proc, STALL_SECONDS)
    elif rng.random() < 2 / 3:  # during training: after this launch's first step
        progressed = wait(proc, STALL_SECONDS, lambda: trained_since(out, t0))
        wait(proc, rng.uniform(0.0, 4.0))
    else:  # any moment, start-up included
        progressed = True
        wait(proc, rng.uniform(0.0, 30.0))
    if not progressed:
        stop(proc, list(descendants(proc.pid)))
        return fail(tally, f"no progress in {STALL_SECONDS:.0f} s", log)
    if proc.poll() is None:
        return kill_one(proc, log, rng, tally)
    return "finished" if proc.returncode == 0 else fail(tally, f"rl exited with {proc.returncode} unkilled", log)


def finish_run(config: Path, steps: int, rng: random.Random, tally: Counter, may_kill) -> None:
    """Launches (and kills) until the run finishes, then checks that it trained every step exactly once."""
    from prime_rl.launcher.history import History, read_history
    from prime_rl.launcher.resume import latest_resumable

    out, resume, failures = config.parent / "out", False, tally["failures"]
    while launch(config, resume, rng, tally, may_kill()) != "finished":
        if tally["failures"] == failures + 3:
            print(f"giving up on {config.parent} after 3 failures", flush=True)
            return
        resume = latest_resumable(out) is not None
    history = read_history(out, steps)
    tally.update(runs=1, **{key: len(found) for key, found in vars(history).items()})
    print(f"run {tally['runs']} finished: {history}", flush=True)
    if history == History(lost=[], duplicated=[], unordered=[], mismatched=[]) and tally["failures"] == failures:
        shutil.rmtree(out)  # a run's checkpoints take ~0.5 GB; a faulty run stays for inspection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None, help="seed of victims and moments (default: random)")
    parser.add_argument("--max-minutes", type=float, default=240.0, help="no kill after this; the run then finishes")
    parser.add_argument("--steps", type=int, default=8, help="max_steps of each run")
    parser.add_argument("--dir", type=Path, default=None, help="where runs go (default: a new temporary directory)")
    args = parser.parse_args()
    seed = random.randrange(2**32) if args.seed is None else args.seed
    rng, tally, start = random.Random(seed), Counter(), time.monotonic()
    root = args.dir or Path(tempfile.mkdtemp(prefix="soak-"))
    print(f"seed {seed}, runs under {root}", flush=True)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_tiny_model_dir

    (root / "model").mkdir(parents=True, exist_ok=True)
    model_dir = build_tiny_model_dir(root / "model")

    def may_kill() -> bool:
        return tally["kills"] < args.kills and time.monotonic() < start + 60 * args.max_minutes

    for run in itertools.count():
        if not may_kill():
            break
        run_dir = root / f"run_{run}"
        run_dir.mkdir()
        finish_run(write_config(run_dir, model_dir, args.steps, rng.choice((1, 2))), args.steps, rng, tally, may_kill)
    minutes = (time.monotonic() - start) / 60
    print(f"digest mismatches: {tally['mismatched']}, out of order: {tally['unordered']}, "
          f"failures: {tally['failures']}, wall time: {minutes:.1f} min")  # fmt: skip
    print(f"kills: {tally['kills']}, runs: {tally['runs']}, lost steps: {tally['lost']}, "
          f"duplicated: {tally['duplicated']}, orphans: {tally['orphans']}")  # fmt: skip


if __name__ == "__main__":
    main()
