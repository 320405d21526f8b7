"""The thread rule (`utils/threads.py`): cores from the affinity mask and cgroup quota, per-role defaults, explicit
counts that win but are warned about, and a process started under `taskset -c 0` using one thread."""

import logging
import os
import shutil
import subprocess
import sys
import threading

import pytest

from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.launch import check_thread_budget
from prime_rl.utils import threads
from prime_rl.utils.threads import (
    available_cores,
    cgroup_cpu_limit,
    check_threads,
    default_threads,
    pin_current_thread,
    split_threads,
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_quota_v2_and_v1(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None
    write(tmp_path / "v2" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "v2") is None
    write(tmp_path / "v2" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path / "v2") == 1.5
    write(tmp_path / "v1" / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "v1" / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path / "v1") is None
    write(tmp_path / "v1" / "cpu" / "cpu.cfs_quota_us", "200000\n")
    assert cgroup_cpu_limit(tmp_path / "v1") == 2.0


@pytest.mark.parametrize(
    ("mask", "quota", "cores"),
    [({0, 1, 2, 3}, None, 4), ({5}, None, 1), ({0, 1, 2, 3}, "250000 100000", 2), ({0, 1}, "150000 100000", 1),
     ({0, 1}, "50000 100000", 1), ({0, 1}, "400000 100000", 2)],
)  # fmt: skip
def test_available_cores_from_mask_and_quota(tmp_path, mask, quota, cores):
    if quota is not None:
        write(tmp_path / "cpu.max", quota)
    assert available_cores(mask, tmp_path) == cores


def test_default_threads_per_role():
    assert [default_threads("inference", n) for n in (1, 2, 8)] == [1, 1, 7]
    assert [default_threads("trainer", n) for n in (1, 2, 8)] == [1, 2, 8]
    assert [default_threads("orchestrator", n) for n in (1, 8)] == [1, 1]
    assert [split_threads(n) for n in (1, 2, 3, 8)] == [(1, 1), (1, 1), (1, 2), (4, 4)]


def test_explicit_threads_win_but_more_than_the_cores_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="prime_rl"):
        assert check_threads(2, "num_threads", cores=2) == 2
        assert caplog.text == ""
        assert check_threads(3, "trainer.num_threads", cores=2) == 3
    assert (
        "`trainer.num_threads` = 3 is more than the 2 core(s) this process may run on (affinity and cgroup quota); "
        "its threads will compete for cores (docs/scaling.md, Threads)" in caplog.text
    )


def test_rl_warns_when_its_processes_ask_for_more_threads_than_cores(monkeypatch, caplog):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    config = RLConfig(inference={"num_threads": 1}, trainer={"num_threads": 1})
    with caplog.at_level(logging.WARNING, logger="prime_rl"):
        assert check_thread_budget(config) == 2
        assert caplog.text == ""
        config = RLConfig(inference={"num_threads": 2}, trainer={"num_threads": 2})
        assert check_thread_budget(config) == 4
    assert "`inference.num_threads x inference.num_servers + trainer.num_threads` = 4 is more than the 2" in caplog.text


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux affinity")
def test_pinning_moves_only_the_calling_thread():
    before = os.sched_getaffinity(0)
    seen = {}

    def engine_thread():
        seen["chosen"] = pin_current_thread(1)
        seen["mask"] = os.sched_getaffinity(0)

    worker = threading.Thread(target=engine_thread)
    worker.start()
    worker.join()
    assert seen["chosen"] == seen["mask"] == ({max(before)} if len(before) > 1 else before)
    assert os.sched_getaffinity(0) == before


CHILD = (
    "import torch; from prime_rl.utils.threads import setup_threads; "
    "print(setup_threads(None, 'trainer'), setup_threads(None, 'inference'), torch.get_num_threads(), "
    "torch.get_num_interop_threads())"
)


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_a_process_started_on_one_core_uses_one_thread():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["1", "1", "1", "1"]
