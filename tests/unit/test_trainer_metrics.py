"""Metric aggregation and the JSONL writer."""

from __future__ import annotations

import math

import torch

from prime_rl.utils.metrics import MetricsWriter, aggregate, read_metrics, summarize


def test_summarize_and_aggregate():
    assert summarize([1.0, 2.0, 3.0, 6.0]) == {"mean": 3.0, "std": math.sqrt(3.5), "min": 1.0, "max": 6.0}
    assert summarize(torch.tensor([[1.0], [3.0]])) == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert all(math.isnan(v) for v in summarize([]).values())
    assert aggregate({"kl": [0.0, 2.0]}, prefix="loss/") == {
        "loss/kl/mean": 1.0,
        "loss/kl/std": 1.0,
        "loss/kl/min": 0.0,
        "loss/kl/max": 2.0,
    }


def test_metrics_writer_appends_one_line_per_step(tmp_path):
    writer = MetricsWriter(tmp_path / "metrics" / "trainer.jsonl")
    writer.write(0, {"loss": 0.5, "t": torch.tensor(2.0)})
    writer.write(1, {"loss": 0.25})
    records = read_metrics(tmp_path / "metrics" / "trainer.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    assert records[0]["loss"] == 0.5 and records[0]["t"] == 2.0
    assert records[1]["loss"] == 0.25
