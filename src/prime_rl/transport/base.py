"""Orchestrator → trainer batch hand-off: a sender and a receiver behind a small interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from prime_rl.transport.types import TrainingBatch


class BatchSender(ABC):
    @abstractmethod
    def send(self, batch: TrainingBatch) -> None:
        """Publishes the batch for `batch.step`; atomically, so a receiver never sees part of it."""


class BatchReceiver(ABC):
    @abstractmethod
    def receive(self, step: int, timeout: float | None = None) -> TrainingBatch:
        """Blocks until the batch for `step` is available (TimeoutError after `timeout` seconds)."""

    @abstractmethod
    def available(self, step: int) -> bool:
        """Whether the batch for `step` can be received without waiting."""
