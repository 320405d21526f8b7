"""The evaluation run (`eval @ eval.toml`, started by `cli.py`): the base model and/or every `weights/step_N` of a run
on environments' eval splits through one inference server (weights switched with `/update_weights`), written to
`eval/results.json` and printed as a table."""

from __future__ import annotations

import asyncio
from typing import Any

from transformers import AutoTokenizer

from prime_rl.client import InferenceError
from prime_rl.eval.config import EvalConfig
from prime_rl.eval.evaluate import eval_examples, evaluate, example_limits, load_eval_environments
from prime_rl.eval.report import results_document, results_table, rubric_table, write_results
from prime_rl.eval.server import inference_server, load_policy, policy_targets, setup_client
from prime_rl.run_dir import RunDir
from prime_rl.utils.config import ConfigError, RunError, config_key
from prime_rl.utils.logger import get_logger, setup_process_logger
from prime_rl.utils.models import resolve_model_path


def setup_environments(config: EvalConfig) -> dict[str, Any]:
    """`{name: environment}` in config order, each with a non-empty eval split; multi-turn environments get the
    model's tokenizer. Raises ConfigError naming the model or environment."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.model.name))
    except OSError as e:
        raise ConfigError(f"model.name `{config.model.name}`: cannot load a tokenizer: {e}") from e
    with config_key(config, "env"):
        envs = load_eval_environments(config.env, tokenizer)
    for name, env in envs.items():
        try:
            eval_examples(env, name, None)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    return envs


async def evaluate_policies(config: EvalConfig, envs: dict, base_url: str) -> dict[str, dict[str, Any]]:
    """Serves each policy target in turn and evaluates it: `{label: {policy_step, weight_dir, metrics}}`."""
    logger = get_logger("eval")
    limits = example_limits(config.env, list(envs), config.num_examples)
    client = setup_client(config, base_url)
    results = {}
    try:
        await client.wait_healthy(config.client.health_timeout)
        for label, weight_dir in policy_targets(config):
            policy_step = await load_policy(client, weight_dir)
            logger.info(f"evaluating {label} (policy step {policy_step})")
            metrics = await evaluate(
                envs,
                client,
                limits,
                config.rollouts_per_example,
                config.sampling,
                config.seed,
                config.max_concurrent,
                config.pass_threshold,
            )
            client.raise_if_unreachable()
            for name in envs:
                if metrics[f"{name}/errored"] > 0:
                    logger.warning(f"{label} {name}: {metrics[f'{name}/errored']:.0%} of the rollouts errored")
            entry = {"policy_step": policy_step, "weight_dir": str(weight_dir) if weight_dir else None}
            results[label] = entry | {"metrics": metrics}
    finally:
        await client.close()
    return results


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Runs the evaluation, writes `output_dir/eval/results.json`, prints the table; returns the results document.
    A server that refuses a request, stays unreachable or never gets healthy is a RunError naming it."""
    logger = setup_process_logger("eval", config.log, config.output_dir)
    policy_targets(config)  # a missing step fails before a server is started
    envs = setup_environments(config)
    try:
        with inference_server(config) as base_url:
            logger.info(f"inference server at {base_url}")
            results = asyncio.run(evaluate_policies(config, envs, base_url))
    except (InferenceError, TimeoutError) as e:
        raise RunError(str(e)) from e
    document = results_document(config, results)
    path = write_results(RunDir(config.output_dir).eval_results, document)
    print(results_table(results, list(envs), config.rollouts_per_example))
    if (rubric := rubric_table(results, list(envs))) is not None:
        print(rubric)
    logger.info(f"results written to {path}")
    return document
