"""Continuous batching: the queue of waiting requests, which of them join the running batch, and the batch itself.

The running batch lists its sequences in KV-cache slot order (sequence `i` owns slot `i`); sequences that finish or
whose caller went away are compacted out by moving the kept rows down.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prime_rl.inference.engines.kv_cache import SlotKVCache
from prime_rl.inference.engines.requests import Request, Sequence

ARRIVAL_QUIET_S = 0.005
ARRIVAL_MAX_WAIT_S = 0.05
"""From idle, the engine waits until requests stop arriving for ARRIVAL_QUIET_S (at most ARRIVAL_MAX_WAIT_S), so a
burst of requests shares one prefill instead of the first one being prefilled alone."""

PREFILL_TOKEN_BUDGET = 4096
"""Most (padded) prompt tokens prefilled in one forward; bounds the attention activations of a prefill."""


class Scheduler:
    """`pending` is shared with the event loop (guarded by `cond`); everything else belongs to the engine thread."""

    def __init__(self, max_batch_size: int, cache: SlotKVCache):
        self.max_batch_size = max_batch_size
        self.cache = cache
        self.cond = threading.Condition()
        self.pending: deque[Request] = deque()
        self.active: list[Sequence] = []
        """Running sequences in slot order."""
        self.in_flight: list[Request] = []
        """Admitted requests with at least one running sequence."""

    def submit(self, request: Request) -> None:
        with self.cond:
            self.pending.append(request)
            self.cond.notify_all()

    def wait_for_burst(self) -> None:
        deadline = time.monotonic() + ARRIVAL_MAX_WAIT_S
        seen = -1
        while seen != len(self.pending) and time.monotonic() < deadline:
            seen = len(self.pending)
            time.sleep(ARRIVAL_QUIET_S)

    def take_admissible(self) -> list[Request]:
        """Pops waiting requests that fit in the batch and in one prefill forward."""
        taken: list[Request] = []
        rows = len(self.active)
        if any(s.request.solo for s in self.active):
            return taken
        with self.cond:
            while self.pending:
                request = self.pending[0]
                if request.cancelled:
                    self.pending.popleft()
                    continue
                if request.solo:
                    if not taken and not self.active:
                        taken.append(self.pending.popleft())
                    break
                longest = max([len(r.prompt_ids) for r in taken] + [len(request.prompt_ids)])
                if rows + request.params.n > self.max_batch_size:
                    break
                if taken and longest * (len(taken) + 1) > PREFILL_TOKEN_BUDGET:
                    break
                taken.append(self.pending.popleft())
                rows += request.params.n
        return taken

    def add(self, requests: list[Request], ordered: list[Sequence]) -> None:
        """Appends admitted requests whose sequences now hold the slots after the running ones, in `ordered` order."""
        self.active.extend(ordered)
        self.in_flight.extend(requests)

    def longest_possible(self) -> int:
        """The most tokens (prompt + completion) any running sequence can reach: what the KV cache needs at most."""
        return max((len(s.request.prompt_ids) + s.request.max_new for s in self.active), default=0)

    def drop_cancelled(self) -> None:
        if not any(r.cancelled for r in self.in_flight):
            return
        self.in_flight = [r for r in self.in_flight if not r.cancelled]
        self.compact([s for s in self.active if not s.request.cancelled])

    def retire(self) -> list[Request]:
        """Removes finished sequences; returns (and forgets) the requests whose choices have all finished."""
        self.compact([s for s in self.active if s.finish_reason is None])
        finished = [r for r in self.in_flight if r.done]
        self.in_flight = [r for r in self.in_flight if not r.done]
        return finished

    def compact(self, keep: list[Sequence]) -> None:
        """Moves the kept sequences' cache rows down so they occupy slots 0..len(keep)-1, in order."""
        slot_of = {id(s): i for i, s in enumerate(self.active)}
        for new_slot, seq in enumerate(keep):
            old_slot = slot_of[id(seq)]
            if old_slot != new_slot:
                self.cache.copy_slot(old_slot, new_slot, seq.length)
        self.active = keep

    def requeue(self, requests: list[Request]) -> None:
        """Puts `requests` back at the head of the queue, in order, to be prefilled again from their prompt."""
        for request in requests:
            request.sequences = []
        with self.cond:
            self.pending.extendleft(reversed(requests))

    def requeue_in_flight(self) -> tuple[list[Request], list[Request]]:
        """Puts non-streamed requests in flight back at the head of the queue; returns (streamed, requeued)."""
        streamed = [r for r in self.in_flight if r.on_token is not None]
        restart = [r for r in self.in_flight if r.on_token is None]
        self.requeue(restart)
        self.in_flight, self.active = [], []
        return streamed, restart

    def clear(self) -> list[Request]:
        """Empties the batch and frees the cache; returns the requests that were in flight."""
        requests = self.in_flight
        self.in_flight, self.active = [], []
        self.cache.release()
        return requests

    @property
    def idle(self) -> bool:
        return not self.active and not self.pending
