"""The verifiers v1 taskset the verifiers tests load by id (`count-taskset`, module `count_taskset`): six tasks
"Count to i." with a system prompt and the answer i, rewarded by the reply's length, so that a random model gets
rewards that vary within a group."""

COUNT_TASKSET = """
import verifiers.v1 as vf


class CountData(vf.TaskData):
    answer: str = ""


class CountTask(vf.Task[CountData]):
    @vf.reward
    async def text_length(self, trace) -> float:
        return (len(trace.last_reply) % 7) / 6


class CountTaskset(vf.Taskset[CountTask]):
    def load(self):
        for i in range(6):
            yield CountTask(CountData(prompt=f"Count to {i}.", system_prompt="Be brief.", answer=str(i)))


__all__ = ["CountTaskset"]
"""
