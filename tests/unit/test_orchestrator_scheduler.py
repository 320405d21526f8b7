import asyncio

import pytest

from prime_rl.orchestrator.scheduler import PolicyScheduler, next_policy, required_policy


def test_required_policy():
    assert [required_policy(n, 1) for n in range(4)] == [0, 0, 1, 2]
    assert [required_policy(n, 0) for n in range(3)] == [0, 1, 2]
    assert [required_policy(n, 2) for n in range(4)] == [0, 0, 0, 1]


def test_next_policy_loads_newest_stable_or_keeps():
    assert next_policy(required_policy(3, 1), loaded=1, latest_stable=3) == 3
    assert next_policy(required_policy(3, 1), loaded=2, latest_stable=2) is None
    assert next_policy(required_policy(0, 0), loaded=0, latest_stable=None) is None
    assert next_policy(required_policy(0, 0), loaded=-1, latest_stable=None) == 0  # after a resume: reload the base
    with pytest.raises(ValueError, match=r"needs policy >= 2, newest available is 1"):
        next_policy(required_policy(3, 1), loaded=1, latest_stable=1)


def _stable(root, step):
    path = root / "broadcasts" / f"step_{step}"
    path.mkdir(parents=True)
    (path / "STABLE").touch()


def test_scheduler_waits_for_required_broadcast_then_loads_it(tmp_path):
    loads = []

    async def update(weight_dir, step):
        loads.append((weight_dir.name, step))

    async def scenario():
        scheduler = PolicyScheduler(tmp_path, max_async_level=1, update_fn=update, poll_interval=0.01, timeout=5)
        assert await scheduler.prepare(0) >= 0 and await scheduler.prepare(1) >= 0
        assert loads == []
        waiting = asyncio.ensure_future(scheduler.prepare(2))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # policy 1 is not stable yet
        (tmp_path / "broadcasts" / "step_1").mkdir(parents=True)  # a half-written broadcast is ignored
        await asyncio.sleep(0.05)
        assert not waiting.done()
        (tmp_path / "broadcasts" / "step_1" / "STABLE").touch()
        await asyncio.wait_for(waiting, 2)
        _stable(tmp_path, 2)
        _stable(tmp_path, 3)
        await scheduler.prepare(3)  # newest stable (3) is loaded, not just the required 2
        return scheduler.loaded

    assert asyncio.run(scenario()) == 3
    assert loads == [("step_1", 1), ("step_3", 3)]


def test_scheduler_timeout_names_the_missing_marker(tmp_path):
    async def update(weight_dir, step):
        raise AssertionError("nothing to load")

    scheduler = PolicyScheduler(tmp_path, max_async_level=0, update_fn=update, poll_interval=0.01, timeout=0.05)
    with pytest.raises(TimeoutError, match=r"step 1 needs policy 1 but .*broadcasts/step_1/STABLE did not appear"):
        asyncio.run(scheduler.prepare(1))
