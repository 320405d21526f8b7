"""`rl` owns its run: SIGKILL of `rl` leaves no process of the run alive after 5 s and a resume then trains every
batch exactly once; SIGHUP stops the run like SIGTERM; a second `rl` on the same directory or the same port is
refused with exit 2."""

import os
import signal
import subprocess
import sys
import tomllib

from test_resume import _config

from prime_rl.launcher.preflight import RunLock
from prime_rl.utils.lifecycle import alive_after
from rl_runs import assert_exactly_once, child_pids, start_rl, wait_trained


def test_sigkill_of_rl_leaves_nothing_alive_and_resume_trains_exactly_once(tmp_path, tiny_model_dir):
    config, out, steps = _config(tmp_path, tiny_model_dir), tmp_path / "out", ("--max-steps", "6")
    proc = start_rl(config, *steps)
    wait_trained(out, 2, proc, timeout=120)
    children = child_pids(out)
    assert sorted(children) == ["inference", "orchestrator", "trainer"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert alive_after(list(children.values()), 5.0) == []
    os.close(RunLock(out).fd)  # nothing of the run holds its directory

    resumed = start_rl(config, *steps, "--ckpt.resume-step", "-1")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert_exactly_once(out, 6)


def test_second_rl_on_the_directory_or_port_is_refused_and_sighup_stops_the_run(tmp_path, tiny_model_dir):
    config, out = _config(tmp_path, tiny_model_dir), tmp_path / "out"
    port = tomllib.loads(config.read_text())["inference"]["server"]["port"]
    proc = start_rl(config, "--max-steps", "1000")
    wait_trained(out, 1, proc, timeout=120)
    rl = [sys.executable, "-m", "prime_rl.rl", "@", str(config)]
    same_dir = subprocess.Popen(rl, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    same_port = subprocess.Popen([*rl, "--output-dir", str(tmp_path / "other")], stderr=subprocess.PIPE, text=True)
    same_dir_err, same_port_err = same_dir.communicate(timeout=120)[1], same_port.communicate(timeout=120)[1]
    assert same_dir.returncode == 2 and same_port.returncode == 2
    assert same_dir_err.splitlines() == [
        f"rl: error: `output_dir` = {out} is in use by a running rl (pid {proc.pid}): {out}/rl.lock is locked"
    ]
    assert same_port_err.splitlines() == [
        f"rl: error: `inference.server.port` = {port}: 127.0.0.1:{port} is already in use (stop whatever listens "
        "there or choose another port)"
    ]
    assert proc.poll() is None  # the live run was not disturbed

    children = child_pids(out)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert "rl: interrupted after" in stderr
    assert alive_after(list(children.values()), 0.0) == []
    os.close(RunLock(out).fd)
