"""With verifiers 0.4 installed (marker `verifiers`): a taskset id loads as a `VerifiersEnv`, and a module written
for the 0.1.x API fails with one line naming the installed version."""

from __future__ import annotations

import pytest

pytest.importorskip("verifiers.v1")
pytestmark = pytest.mark.verifiers

from prime_rl.environments import load_environment  # noqa: E402
from prime_rl.environments.verifiers import verifiers_version  # noqa: E402
from prime_rl.environments.verifiers.env import VerifiersEnv  # noqa: E402
from prime_rl.utils.config import ConfigError  # noqa: E402
from verifiers_tasksets import COUNT_TASKSET  # noqa: E402

V01_ENV = """
import verifiers as vf

def load_environment():
    return vf.SingleTurnEnv(dataset=[], rubric=vf.Rubric(funcs=[]))
"""


def test_a_0_1_api_module_is_one_line_naming_the_version(write_module):
    write_module("old_env", V01_ENV)
    with pytest.raises(ConfigError) as e:
        load_environment("old-env")
    assert str(e.value) == (
        "environment `old-env`: module `old_env` uses the verifiers 0.1.x API (module 'verifiers' has no attribute "
        f"'SingleTurnEnv'); the installed verifiers {verifiers_version()} has only the v1 API (`verifiers.v1`: "
        "tasksets and harnesses), the one prime-rl supports"
    )


def test_a_taskset_id_loads_its_tasks_as_examples(write_module):
    write_module("count_taskset", COUNT_TASKSET)
    env = load_environment("count-taskset", max_examples=2)
    assert isinstance(env, VerifiersEnv) and env.name == "count-taskset"
    assert [(e.example_id, e.prompt, e.answer) for e in env.dataset()] == [
        (i, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Count to {i}."}], str(i))
        for i in range(2)
    ]
    assert env.eval_dataset() == []
