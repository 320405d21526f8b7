"""LoRA on the vLLM engine without vLLM installed: the engine arguments, what `rl` tells the servers from
`[model.lora]`, and the server's check of an adapter broadcast before vLLM reads it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

from prime_rl.inference.config import InferenceConfig
from prime_rl.inference.engines.base import EngineError
from prime_rl.inference.engines.vllm import vllm_engine_args
from prime_rl.inference.engines.vllm_lora import check_adapter_dir, lora_engine_args
from prime_rl.inference.engines.vllm_weights import parameter_table
from prime_rl.launcher.config import RLConfig
from prime_rl.launcher.launch import render_configs
from prime_rl.trainer.config import LoRAConfig, TrainerModelConfig
from prime_rl.trainer.model import setup_model
from prime_rl.utils.config import ConfigError, parse_config
from prime_rl.weights.broadcast import broadcast_weights


@pytest.mark.parametrize("rank, served", [(1, 1), (4, 8), (16, 16), (17, 32), (300, 320), (512, 512)])
def test_lora_rank_rounds_up_to_a_rank_vllm_accepts(rank: int, served: int):
    assert lora_engine_args(rank) == {"enable_lora": True, "max_lora_rank": served, "max_loras": 1, "max_cpu_loras": 1}


def test_vllm_engine_args_enable_lora_only_when_asked():
    args = vllm_engine_args(InferenceConfig(engine="vllm", vllm={"max_lora_rank": 4}), "/m", on_gpu=True)
    assert (args["enable_lora"], args["max_lora_rank"], args["max_loras"]) == (True, 8, 1)
    assert "enable_lora" not in vllm_engine_args(InferenceConfig(engine="vllm"), "/m", on_gpu=True)
    with pytest.raises(ConfigError, match=r"`vllm\.max_lora_rank`: Input should be less than or equal to 512"):
        parse_config(InferenceConfig, ["--vllm.max-lora-rank", "1024"])


def rl(tmp_path: Path, text: str) -> RLConfig:
    (tmp_path / "rl.toml").write_text(text)
    return parse_config(RLConfig, ["@", str(tmp_path / "rl.toml")])


def test_rl_tells_the_vllm_servers_the_trainers_lora_rank(tmp_path: Path):
    config = rl(tmp_path, '[model.lora]\nrank = 4\n[inference]\nengine = "vllm"\n')
    assert config.inference.vllm.max_lora_rank == 4
    written = tomllib.loads(render_configs(config)["inference"])
    assert written["vllm"]["max_lora_rank"] == 4  # the server started by `rl` reads its resolved config
    wider = rl(tmp_path, '[model.lora]\nrank = 4\n[inference]\nengine = "vllm"\n[inference.vllm]\nmax_lora_rank = 64\n')
    assert wider.inference.vllm.max_lora_rank == 64
    assert rl(tmp_path, "[model.lora]\nrank = 4\n").inference.vllm.max_lora_rank is None  # the HF engine merges


@pytest.mark.parametrize(
    "text, message",
    [
        ('[model.lora]\nrank = 16\n[inference]\nengine = "vllm"\n[inference.vllm]\nmax_lora_rank = 8\n',
         "`inference.vllm.max_lora_rank` = 8 is below `model.lora.rank` = 16"),
        ('[model.lora]\nrank = 600\n[inference]\nengine = "vllm"\n',
         "`model.lora.rank` = 600: the vLLM engine serves LoRA ranks up to 512"),
    ],
)  # fmt: skip
def test_lora_the_vllm_engine_cannot_serve_is_refused_naming_the_key(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError) as error:
        rl(tmp_path, text)
    assert message in str(error.value)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trainer's LoRA broadcast (rank 4) of the tiny model, B moved off zero."""
    torch.manual_seed(0)
    model = setup_model(TrainerModelConfig(name=str(tiny_model_dir), lora=LoRAConfig(rank=4, alpha=8.0)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.02)
    return broadcast_weights(model, tmp_path_factory.mktemp("out"), 1, keep=1)


def copy_with(adapter_dir: Path, target: Path, **config_changes) -> Path:
    target.mkdir()
    (target / "adapter_model.safetensors").write_bytes((adapter_dir / "adapter_model.safetensors").read_bytes())
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    (target / "adapter_config.json").write_text(json.dumps(config | config_changes))
    return target


def test_adapter_broadcast_passes_the_servers_check(adapter_dir: Path, tiny_model_dir: Path):
    assert check_adapter_dir(adapter_dir, parameter_table(str(tiny_model_dir)), 8) == 4


def test_adapter_the_server_cannot_serve_is_refused(adapter_dir: Path, tiny_model_dir: Path, tmp_path: Path):
    table = parameter_table(str(tiny_model_dir))
    cases = [
        (adapter_dir, None, "holds a LoRA adapter but this server runs without LoRA: set `vllm.max_lora_rank`"),
        (adapter_dir, 1, "adapter_config.json`: rank r = 4 exceeds the server's `vllm.max_lora_rank` (1)"),
        (copy_with(adapter_dir, tmp_path / "dora", use_dora=True), 8, "`use_dora` is not supported"),
    ]
    for path, max_rank, message in cases:
        with pytest.raises(EngineError) as error:
            check_adapter_dir(path, table, max_rank)
        assert message in error.value.message and error.value.param == "weight_dir"


def test_adapter_of_another_model_is_refused(adapter_dir: Path, tiny_model_dir: Path):
    table = parameter_table(str(tiny_model_dir))
    name = "model.layers.1.self_attn.q_proj.weight"
    table.shapes[name] = (128, 64)
    with pytest.raises(EngineError) as error:
        check_adapter_dir(adapter_dir, table, 8)
    assert (
        f"adapter_model.safetensors`: adapter of `{name}`: A (4, 64) and B (64, 4) do not fit the weight (128, 64)"
        in (error.value.message)
    )
