"""InferenceConfig: the field names the `rl` launcher writes, defaults, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from prime_rl.inference.config import InferenceConfig
from prime_rl.utils.config import ConfigError, parse_config


def test_defaults_bind_locally_and_serve_the_alias():
    config = parse_config(InferenceConfig, [])
    assert config.model.name == "smollm2-135m-instruct"
    assert (config.server.host, config.server.port, config.server.api_key) == ("127.0.0.1", 8000, None)
    assert config.output_dir == Path("outputs") and config.num_threads is None and config.max_batch_size == 64


def test_toml_and_cli_fill_the_launcher_fields(tmp_path: Path):
    toml = tmp_path / "infer.toml"
    toml.write_text('output_dir = "runs/a"\nnum_threads = 1\n[model]\nname = "some/model"\nmax_model_len = 512\n')
    config = parse_config(InferenceConfig, ["@", str(toml), "--server.port", "8123", "--server.api-key", "k"])
    assert config.model.name == "some/model" and config.model.max_model_len == 512
    assert config.output_dir == Path("runs/a") and config.num_threads == 1
    assert (config.server.port, config.server.api_key) == (8123, "k")


def test_unknown_key_and_bad_value_name_the_key(tmp_path: Path):
    toml = tmp_path / "infer.toml"
    toml.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"infer.toml: unknown key `server.prot` \(did you mean `server.port`\?\)"):
        parse_config(InferenceConfig, ["@", str(toml)])
    with pytest.raises(ConfigError, match="`num_threads`"):
        parse_config(InferenceConfig, ["--num-threads", "0"])
