"""The one client of the inference server(s): sampling, weight updates, health (architecture.md §6).

Its own package because the environments (which receive it as their client), the orchestrator and `eval` all use it:
inside any of them it would make the others import that package; `inference/` is the server and imports torch.
It depends on httpx only, so importing it can close no cycle.
"""

from prime_rl.client.errors import InferenceError, InferenceUnreachable
from prime_rl.client.inference import InferenceClient
from prime_rl.client.retry import RetryPolicy
from prime_rl.client.wire import Completion, root_url

__all__ = ["Completion", "InferenceClient", "InferenceError", "InferenceUnreachable", "RetryPolicy", "root_url"]
