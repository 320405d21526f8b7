"""`engine = "vllm"` configuration without vLLM installed: the engine arguments it becomes, and `rl` with several
inference servers (ports, URLs, devices, log files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prime_rl.inference.config import InferenceConfig
from prime_rl.inference.engines.vllm import WORKER_EXTENSION, vllm_engine_args
from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.supervise import process_specs, server_urls
from prime_rl.utils.config import ConfigError, parse_config


def test_engine_defaults_to_hf_and_vllm_options_parse(tmp_path: Path):
    assert parse_config(InferenceConfig, []).engine == "hf"
    toml = tmp_path / "infer.toml"
    toml.write_text('engine = "vllm"\n[vllm]\nenable_prefix_caching = true\nengine_args = { swap_space = 2 }\n')
    config = parse_config(InferenceConfig, ["@", str(toml), "--vllm.tensor-parallel-size", "2"])
    assert (config.engine, config.vllm.tensor_parallel_size, config.vllm.engine_args) == ("vllm", 2, {"swap_space": 2})
    with pytest.raises(ConfigError, match="`engine`"):
        parse_config(InferenceConfig, ["--engine", "sglang"])
    with pytest.raises(ConfigError, match=r"unknown key `vllm.tensor_parallel`"):
        toml.write_text("[vllm]\ntensor_parallel = 2\n")
        parse_config(InferenceConfig, ["@", str(toml)])


def test_vllm_engine_args_on_cpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    config = InferenceConfig(engine="vllm", model={"max_model_len": 512}, max_batch_size=8, seed=3)
    args = vllm_engine_args(config, "/m", on_gpu=False)
    assert args == {
        "model": "/m",
        "dtype": "float32",
        "max_model_len": 512,
        "seed": 3,
        "max_num_seqs": 8,
        "gpu_memory_utilization": 0.9,
        "tensor_parallel_size": 1,
        "enforce_eager": False,
        "logprobs_mode": "processed_logprobs",
        "worker_extension_cls": WORKER_EXTENSION,
        "disable_log_stats": True,
        "enable_chunked_prefill": False,
        "kv_cache_memory_bytes": 2 * 2**30,
    }
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    assert "kv_cache_memory_bytes" not in vllm_engine_args(config, "/m", on_gpu=False)


def test_vllm_engine_args_on_gpu_pass_options_through():
    vllm = {"dtype": "bfloat16", "max_num_seqs": 256, "enable_prefix_caching": True, "kv_cache_gib": 1.5,
            "engine_args": {"swap_space": 4, "enforce_eager": True}}  # fmt: skip
    args = vllm_engine_args(InferenceConfig(engine="vllm", vllm=vllm), "org/model", on_gpu=True)
    assert (args["dtype"], args["max_num_seqs"], args["enable_prefix_caching"]) == ("bfloat16", 256, True)
    assert args["kv_cache_memory_bytes"] == int(1.5 * 2**30)
    assert (args["swap_space"], args["enforce_eager"]) == (4, True)  # engine_args win
    assert vllm_engine_args(InferenceConfig(engine="vllm"), "org/model", on_gpu=True)["dtype"] == "auto"
    assert "enable_chunked_prefill" not in args


def test_rl_starts_one_server_per_port_and_the_orchestrator_gets_every_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    argv = ["--inference.server.port", "9100", "--inference.num-servers", "2", "--inference.engine", "vllm",
            "--inference.vllm.tensor-parallel-size", "2"]  # fmt: skip
    config = parse_config(RLConfig, argv)
    assert config.orchestrator.client.base_url == ["http://127.0.0.1:9100/v1", "http://127.0.0.1:9101/v1"]
    assert server_urls(config) == ["http://127.0.0.1:9100", "http://127.0.0.1:9101"]
    paths = {name: Path(f"configs/{name}.toml") for name in ("inference", "trainer", "orchestrator")}
    specs = process_specs(config, Path("out"), paths)
    assert list(specs) == ["inference", "inference_1", "trainer", "orchestrator"]
    first, second = specs["inference"], specs["inference_1"]
    assert first.command()[-4:] == ["@", "configs/inference.toml", "--server.port", "9100"]
    assert second.command()[-4:] == ["@", "configs/inference.toml", "--server.port", "9101"]
    assert (first.log_path, second.log_path) == (Path("out/logs/inference.log"), Path("out/logs/inference_1.log"))
    assert first.environment()["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert second.environment()["CUDA_VISIBLE_DEVICES"] == "6,7"


def test_one_server_keeps_the_single_url_and_spec():
    config = parse_config(RLConfig, ["--inference.server.port", "9200"])
    assert config.orchestrator.client.base_url == ["http://127.0.0.1:9200/v1"]
    specs = process_specs(config, Path("out"), {n: Path(n) for n in ("inference", "trainer", "orchestrator")})
    assert list(specs) == ["inference", "trainer", "orchestrator"]
    assert specs["inference"].command()[-2:] == ["@", "inference"] and specs["inference"].env == ()


def test_gpu_ids_place_the_servers_beside_the_trainer():
    argv = ["--inference.num-servers", "2", "--inference.gpu-ids", "[4, 5]"]
    config = parse_config(RLConfig, argv)
    specs = process_specs(config, Path("out"), {n: Path(n) for n in ("inference", "trainer", "orchestrator")})
    assert [specs[n].environment()["CUDA_VISIBLE_DEVICES"] for n in ("inference", "inference_1")] == ["4", "5"]
    one = parse_config(RLConfig, ["--inference.gpu-ids", "[6, 7]", "--inference.engine", "vllm",
                                  "--inference.vllm.tensor-parallel-size", "2"])  # fmt: skip
    spec = process_specs(one, Path("out"), {n: Path(n) for n in ("inference", "trainer", "orchestrator")})["inference"]
    assert spec.environment()["CUDA_VISIBLE_DEVICES"] == "6,7"
