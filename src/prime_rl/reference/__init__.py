"""The oracle of the asynchronous loop: one process, strictly on-policy, built from the library's own pieces
(`loop.py`; `python -m prime_rl.reference @ rl.toml`, docs/async.md)."""
