"""`EvalConfig` (`eval @ eval.toml`): which model(s), which environments, how to sample, which inference server; and
`OnlineEvalConfig`, the same evaluation run periodically by the orchestrator (`[orchestrator.eval]`).

No torch import here: configs are parsed (and `--help` answered) before any heavy import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import SettingsConfigDict

from prime_rl.inference.config import InferenceConfig
from prime_rl.utils.config import BaseConfig, BaseSettingsConfig
from prime_rl.utils.config.pushdown import MISSING, get_dotted, push_down, set_dotted
from prime_rl.utils.config.sections import ClientConfig, EnvConfig, LogConfig, ModelConfig, SamplingConfig, env_tables


class EvalEnvConfig(EnvConfig):
    """One environment whose eval split is evaluated."""

    num_examples: int | None = Field(None, ge=1)
    """Examples of this environment's eval split (default: the top-level `num_examples`)."""


class EvalRunConfig(BaseConfig):
    """What one evaluation runs: environments, examples per environment, samples per example, sampling."""

    env: env_tables(EvalEnvConfig) = Field(default_factory=lambda: [EvalEnvConfig()], min_length=1)
    """Environments whose eval splits are evaluated (`[[env]]` tables)."""
    num_examples: int | None = Field(None, ge=1)
    """Examples per environment, the first ones of its eval split (None: the whole split)."""
    rollouts_per_example: int = Field(1, ge=1)
    """Samples per example (`n`): avg@n is the mean reward, pass@k is reported for k = 1, 2, 4, ... and n."""
    pass_threshold: float = 1.0
    """A rollout passes (for pass@k) when its reward is at least this."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling parameters of the eval requests."""
    max_concurrent: int = Field(32, ge=1)
    """Examples in flight at once (each asks for `rollouts_per_example` samples)."""


class OnlineEvalConfig(EvalRunConfig):
    """Periodic evaluation during `rl` (`[orchestrator.eval]`): the served policy on eval splits, as `eval/...`."""

    interval: int = Field(10, ge=1)
    """Evaluate every this many steps (and after the last step)."""
    eval_base: bool = False
    """Also evaluate the base policy before the first step of a fresh run (its record has `step = -1`)."""


class EvalConfig(BaseSettingsConfig, EvalRunConfig):
    """Evaluates a model, and optionally every exported `weights/step_N` of a run, on environments' eval splits:
    avg@k and pass@k per environment, mean completion length, truncation; writes `output_dir/eval/results.json`."""

    # As in `rl`: the `[inference]` defaults that `eval` derives must not be merged into a table the user gives.
    model_config = SettingsConfigDict(
        **{**BaseSettingsConfig.model_config, "nested_model_default_partial_update": False}
    )

    model: ModelConfig = ModelConfig()
    """The base model: served by the inference server, its tokenizer given to multi-turn environments."""
    weights_dir: Path | None = None
    """A run directory (or its `weights/` directory): every complete `weights/step_N` is evaluated in step order,
    switched in with `/update_weights` (None: the base model only)."""
    steps: list[int] | None = None
    """Evaluate only these steps of `weights_dir` (None: all complete ones)."""
    eval_base: bool = True
    """Also evaluate the base model (always on without `weights_dir`)."""
    client: ClientConfig = ClientConfig()
    """The inference server: one already running at `client.base_url`, else the one `eval` starts (`[inference]`).
    A running server's `output_dir` must contain `weights_dir`, or `/update_weights` is refused."""
    inference: InferenceConfig = InferenceConfig(server={"port": 0}, log={"file": False})
    """The server `eval` starts without `client.base_url` (port 0: a free one; `output_dir`: the run of
    `weights_dir`; log: `output_dir/eval/inference.log`)."""
    output_dir: Path = Path("outputs")
    """Where `eval/results.json` (and the self-started server's log and config) are written."""
    seed: int | None = 0
    """Seed of the sampling requests (None: unseeded)."""
    log: LogConfig = LogConfig()
    """Logging."""

    def __init__(self, **values: Any):
        # Derivation must see only what the user gave (TOML + CLI), before defaults are filled in.
        values = push_down(values, {"model.name": ["inference"]}, {"inference": InferenceConfig})
        own_server = get_dotted(values, "client.base_url") is MISSING
        inference = values["inference"]
        for key, value in (("server.port", 0), ("log.file", False), ("seed", values.get("seed") or 0)):
            if get_dotted(inference, key) is MISSING:
                set_dotted(inference, key, value)
        super().__init__(**values)
        self._own_server = own_server

    _own_server: bool = PrivateAttr(True)

    @property
    def own_server(self) -> bool:
        """Whether `eval` starts the inference server (no `client.base_url` given)."""
        return self._own_server

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.steps is not None and self.weights_dir is None:
            raise ValueError("`steps` needs `weights_dir`")
        if len(self.client.base_url) != 1:
            raise ValueError(f"`client.base_url`: eval uses one server, got {self.client.base_url}")
        return self
