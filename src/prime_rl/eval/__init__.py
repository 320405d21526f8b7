"""Evaluation of a model (or every exported step of a run) on environments' eval splits: avg@k, pass@k, lengths."""
