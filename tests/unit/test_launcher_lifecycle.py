"""What `rl` claims before it starts (the run directory's lock, the inference port, the output directory itself), the
API key handed to the orchestrator, and processes that die with their launcher."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.preflight import RunLock, check_port_free
from prime_rl.utils.config import ConfigError, parse_config
from prime_rl.utils.lifecycle import LAUNCHER_PID_ENV, alive, alive_after, descendants, watch_launcher
from prime_rl.utils.net import free_port


def test_run_lock_names_the_holder_and_is_free_once_its_holders_exit(tmp_path):
    out = tmp_path / "out"
    lock = RunLock(out)
    assert (out / "rl.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(ConfigError) as error:
        RunLock(out)
    assert (
        str(error.value)
        == f"`output_dir` = {out} is in use by a running rl (pid {os.getpid()}): {out}/rl.lock is locked"
    )
    # A child that inherited the lock holds it after its launcher let go, and frees it by exiting.
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                             pass_fds=(lock.fd,))  # fmt: skip
    os.close(lock.fd)
    with pytest.raises(ConfigError, match="is in use by a running rl"):
        RunLock(out)
    child.communicate(b"")
    assert RunLock(out).path == out / "rl.lock"


def test_lock_held_for_a_dead_rl_says_so(tmp_path):
    out = tmp_path / "out"
    lock = RunLock(out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / "rl.lock").write_text(dead.stdout)
    with pytest.raises(ConfigError, match=rf"in use by the processes of an rl that died \(pid {dead.stdout.strip()}\)"):
        RunLock(out)
    os.close(lock.fd)


def test_output_dir_that_is_a_file_or_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as error:
        RunLock(tmp_path / "file")
    assert str(error.value) == f"`output_dir` = {tmp_path}/file is not a directory"
    with pytest.raises(ConfigError) as error:
        RunLock(tmp_path / "file" / "out")
    assert str(error.value) == f"`output_dir` = {tmp_path}/file/out cannot be created: Not a directory"


def test_taken_port_is_an_error_naming_it():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(ConfigError) as error:
            check_port_free("127.0.0.1", port)
    assert str(error.value) == (
        f"`inference.server.port` = {port}: 127.0.0.1:{port} is already in use (stop whatever listens there or "
        "choose another port)"
    )
    check_port_free("127.0.0.1", port)  # closed: free again


def test_server_api_key_is_pushed_to_the_orchestrator_client():
    config = parse_config(RLConfig, ["--inference.server.api-key", "s3cret"])
    assert config.orchestrator.client.api_key == "s3cret"
    argv = ["--inference.server.api-key", "s3cret", "--orchestrator.client.api-key", "other"]
    assert parse_config(RLConfig, argv).orchestrator.client.api_key == "other"
    assert parse_config(RLConfig, []).orchestrator.client.api_key is None


# A launcher that starts `child` and a "torchrun" that starts `rank` without watching anything itself: SIGKILL of
# the launcher kills the child (parent-death signal or watchdog) and the middle process, whose rank then notices.
LAUNCHER = """
import os, subprocess, sys, time
from prime_rl.utils.lifecycle import die_with_parent, launcher_env
kwargs = dict(preexec_fn=die_with_parent()) if sys.argv[1] == "pdeathsig" else {}
env = launcher_env(dict(os.environ))
child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, **kwargs)
middle = subprocess.Popen([sys.executable, "-c", MIDDLE], env=env, preexec_fn=die_with_parent(), stdout=subprocess.PIPE)
print(child.pid, middle.pid, int(middle.stdout.readline()), flush=True)
time.sleep(60)
"""
CHILD = "from prime_rl.utils.lifecycle import watch_parent; import time; watch_parent('child', 0.1); time.sleep(60)"
MIDDLE = f"import subprocess, sys, time; print(subprocess.Popen([sys.executable, '-c', {CHILD!r}]).pid, flush=True); time.sleep(60)"  # noqa: E501


@pytest.mark.parametrize("mechanism", ["pdeathsig", "watchdog"])
def test_children_and_grandchildren_die_with_their_launcher(mechanism):
    code = f"CHILD = {CHILD!r}\nMIDDLE = {MIDDLE!r}\n{LAUNCHER}"
    launcher = subprocess.Popen([sys.executable, "-c", code, mechanism], stdout=subprocess.PIPE, text=True)
    pids = list(map(int, launcher.stdout.readline().split()))
    time.sleep(0.5)  # the watchdogs run
    assert len(pids) == 3 and all(alive(p) for p in pids)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    assert alive_after(pids, 5.0) == []


# vLLM's engine core: started by a library (no parent-death signal), it starts a worker that watches nothing.
LIBRARY_LAUNCHER = """
import os, subprocess, sys, time
from prime_rl.utils.lifecycle import launcher_env
core = subprocess.Popen([sys.executable, "-c", CORE], env=launcher_env(dict(os.environ)), stdout=subprocess.PIPE)
print(core.pid, int(core.stdout.readline()), flush=True)
time.sleep(60)
"""
CORE = """
import subprocess, sys, time
from prime_rl.utils.lifecycle import watch_launcher
watch_launcher("core", 0.1)
print(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid, flush=True)
time.sleep(60)
"""


def test_a_process_a_library_started_takes_its_descendants_along_when_its_launcher_dies():
    code = f"CORE = {CORE!r}\n{LIBRARY_LAUNCHER}"
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    core, worker = map(int, launcher.stdout.readline().split())
    assert descendants(launcher.pid) == [core, worker]
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    assert alive_after([core, worker], 5.0) == []


def test_watch_launcher_in_the_launcher_itself_watches_nothing(monkeypatch):
    monkeypatch.setenv(LAUNCHER_PID_ENV, str(os.getpid()))
    threads = threading.active_count()
    watch_launcher("in-process")
    assert threading.active_count() == threads


def test_process_dying_during_start_up_gets_the_resume_hint(tmp_path, monkeypatch, capsys):
    from prime_rl.launcher import supervise

    (tmp_path / "fake_inference.py").write_text("import time\ndef main():\n    time.sleep(60)\n")
    (tmp_path / "fake_trainer.py").write_text("import sys\ndef main():\n    print('boom')\n    sys.exit(3)\n")
    monkeypatch.setitem(supervise.MODULES, "inference", "fake_inference")
    monkeypatch.setitem(supervise.MODULES, "trainer", "fake_trainer")
    config = parse_config(RLConfig, ["--output-dir", str(tmp_path / "out"), "--inference.server.port", "1"])
    paths = {name: tmp_path / f"{name}.toml" for name in supervise.MODULES}
    assert supervise.supervise(config, tmp_path / "out", paths, (str(tmp_path),)) == 1
    err = capsys.readouterr().err
    assert "rl: trainer exited with code 3; last lines of" in err and "  | boom" in err
    assert err.endswith("rl: no complete checkpoint to resume from\n")


FAKE_SERVER = """import http.server, time
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
def main():
    time.sleep(2.0)  # the trainer is done long before the server is healthy
    http.server.HTTPServer(("127.0.0.1", PORT), Health).serve_forever()
"""


def test_a_trainer_with_nothing_left_to_train_may_finish_during_start_up(tmp_path, monkeypatch, capsys):
    """Resumed after its last step (killed before the orchestrator finished), the trainer exits 0 at once; the run
    goes on to the orchestrator (was: `trainer exited with code 1` while the server was still loading)."""
    from prime_rl.launcher import supervise

    port = free_port()
    (tmp_path / "fake_inference.py").write_text(FAKE_SERVER.replace("PORT", str(port)))
    (tmp_path / "fake_trainer.py").write_text("def main():\n    pass\n")
    (tmp_path / "fake_orchestrator.py").write_text("def main():\n    pass\n")
    for name in ("inference", "trainer", "orchestrator"):
        monkeypatch.setitem(supervise.MODULES, name, f"fake_{name}")
    config = parse_config(RLConfig, ["--output-dir", str(tmp_path / "out"), "--inference.server.port", str(port)])
    paths = {name: tmp_path / f"{name}.toml" for name in supervise.MODULES}
    assert supervise.supervise(config, tmp_path / "out", paths, (str(tmp_path),)) == 0, capsys.readouterr().err
    rl_log = (tmp_path / "out/logs/rl.log").read_text()
    assert "inference healthy; started orchestrator" in rl_log and "training finished" in rl_log


@pytest.mark.parametrize(
    ("flag", "key"), [("--seq-len", "seq_len"), ("--inference.model.max-model-len", "inference.model.max_model_len")]
)
def test_a_length_that_leaves_no_room_for_a_completion_is_refused_before_start(tiny_model_dir, flag, key):
    from prime_rl.launcher.checks import check_plugins, check_prompt_lengths

    argv = ["--model.name", str(tiny_model_dir), "--orchestrator.env", '[{id = "one-word"}]']
    fits = parse_config(RLConfig, [*argv, flag, "512"])
    check_prompt_lengths(fits, check_plugins(fits))
    config = parse_config(RLConfig, [*argv, flag, "8"])
    with pytest.raises(ConfigError) as error:
        check_prompt_lengths(config, check_plugins(config))
    assert str(error.value) == (
        f"command line: `{key}` = 8 leaves no room for a completion: "
        "the shortest prompt of `orchestrator.env[0]` (one-word) has 40 tokens"
    )


def test_a_check_forked_by_rl_dies_with_it():
    script = "from prime_rl.launcher.fork import call_in_fork; call_in_fork('time:sleep', 60)"
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not (children := descendants(parent.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children, "the check's child never started"
    parent.kill()
    parent.wait()
    assert alive_after(children, 5.0) == []
