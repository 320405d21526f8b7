"""`[model.lora]`: pushed into the trainer by `rl`, read by `sft`, off by default; bad values fail before start naming
their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from prime_rl.launcher.config import RLConfig
from prime_rl.trainer.config import LoRAConfig
from prime_rl.trainer.sft.config import SFTConfig
from prime_rl.utils.config import ConfigError, parse_config


def toml(tmp_path, text: str) -> list[str]:
    path = tmp_path / "rl.toml"
    path.write_text(text)
    return ["@", str(path)]


def test_model_lora_is_pushed_into_the_trainer(tmp_path):
    config = parse_config(RLConfig, toml(tmp_path, '[model.lora]\nrank = 8\ntarget_modules = ["q_proj", "v_proj"]\n'))
    assert config.trainer.model.lora == LoRAConfig(rank=8, target_modules=["q_proj", "v_proj"])
    assert parse_config(RLConfig, []).trainer.model.lora is None  # off by default
    sft = parse_config(SFTConfig, ["--model.lora.rank", "2", "--data.type", "environment"])
    assert sft.model.lora == LoRAConfig(rank=2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model.lora]\nrank = 0\n", "`model.lora.rank`: Input should be greater than or equal to 1 (got 0)"),
        ("[model.lora]\ntarget_modules = []\n", "`model.lora.target_modules`: must name at least one module"),
        ('[model.lora]\nrank = 600\n[inference]\nengine = "vllm"\n', "`model.lora.rank` = 600: the vLLM engine"),
        ("[model.lora]\n[trainer.model.lora]\nrank = 2\n", "`trainer.model.lora` = {'rank': 2} contradicts the shared"),
    ],
)  # fmt: skip
def test_bad_lora_config_names_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        parse_config(RLConfig, toml(tmp_path, text))
    assert message in str(error.value)


def test_rl_unknown_target_module_exits_2_before_starting(tmp_path, tiny_model_dir, capsys):
    from prime_rl.rl import main

    argv = [*toml(tmp_path, '[model.lora]\ntarget_modules = ["q_proj", "qkv"]\n'), "--model.name", str(tiny_model_dir),
            "--output-dir", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"{tmp_path / 'rl.toml'}: `model.lora.target_modules`: LlamaForCausalLM has no module `qkv`" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


def test_one_word_lora_overlay_parses():
    examples = Path(__file__).resolve().parents[2] / "examples" / "one_word"
    config = parse_config(RLConfig, ["@", str(examples / "rl.toml"), "@", str(examples / "lora.toml")])
    assert config.trainer.model.lora == LoRAConfig(rank=16, alpha=32.0)
    assert (config.trainer.optim.lr, str(config.output_dir)) == (2e-4, "outputs/one_word_lora")
