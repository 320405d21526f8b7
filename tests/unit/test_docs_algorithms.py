"""The `docs/algorithms.md` example of wrapping `default_loss_fn` runs as written and gives the documented numbers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from prime_rl.orchestrator.config import AdvantageConfigType
from prime_rl.trainer.rl.config import LossConfig, LossConfigType
from prime_rl.trainer.rl.loss import LossInputs, compute_loss, default_loss_fn, setup_loss_fn
from prime_rl.utils.config import BaseSettingsConfig, ConfigError, parse_config

DOC = Path(__file__).parents[2] / "docs" / "algorithms.md"


def doc_block(tag: str) -> str:
    match = re.search(rf"<!-- tested-example: {tag}\b[^>]*-->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no `{tag}` example in {DOC}"
    return match.group(1)


class Config(BaseSettingsConfig):
    loss: LossConfigType = LossConfig()


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("my_losses", None)


def test_wrapped_default_loss_example(cwd):
    (cwd / "my_losses.py").write_text(doc_block("wrap-default"))
    (cwd / "loss.toml").write_text(doc_block("wrap-default-toml"))
    config = parse_config(Config, ["@", "loss.toml"])
    loss_fn = setup_loss_fn(config.loss)

    lp = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64, requires_grad=True)
    log_ratio = torch.tensor([0.2, -0.4, 1.6], dtype=torch.float64)  # exp(1.6) = 4.95 > token_mask_high = 4
    inputs = LossInputs(lp, (lp - log_ratio).detach(), None, torch.full((3,), 0.5, dtype=torch.float64), lp < 0)
    loss, metrics = compute_loss(
        [lp], [inputs.inference_logprobs], None, [inputs.advantages], [inputs.loss_mask], loss_fn, 3
    )

    base = default_loss_fn(inputs, LossConfig(token_mask_high=4.0))
    k2 = 0.5 * (0.2**2 + 0.4**2 + 1.6**2)
    assert loss.item() == pytest.approx((base.loss.item() + 0.05 * k2) / 3)
    assert metrics["k2"].tolist() == pytest.approx([k2])
    assert metrics["is_masked"].tolist() == [0.0, 0.0, 1.0]
    (grad,) = torch.autograd.grad(loss, lp)
    ratio = torch.exp(log_ratio)
    expected = [(-ratio[i].item() * 0.5 * (i < 2) + 0.05 * log_ratio[i].item()) / 3 for i in range(3)]
    assert grad.tolist() == pytest.approx(expected)


class PluginsConfig(BaseSettingsConfig):
    loss: LossConfigType = LossConfig()
    advantage: AdvantageConfigType | None = None


def test_every_toml_snippet_parses(tmp_path):
    # The teacher snippets are `rl` configs: `test_teacher_snippets_parse_as_rl_configs`.
    text = re.sub(r"<!-- tested-example: teacher-[^>]*-->\n```toml\n.*?```", "", DOC.read_text(), flags=re.S)
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) == 4
    for i, block in enumerate(blocks):
        (tmp_path / f"{i}.toml").write_text(block)
        parse_config(PluginsConfig, ["@", str(tmp_path / f"{i}.toml")])


def test_teacher_snippets_parse_as_rl_configs(tmp_path):
    from prime_rl.launcher.config import RLConfig

    (tmp_path / "rl.toml").write_text(doc_block("teacher-rl"))
    config = parse_config(RLConfig, ["@", str(tmp_path / "rl.toml"), "--inference.server.port", "9000"])
    assert config.teacher.server.port == 9001 and config.trainer.loss.teacher_tau == 1.0
    assert config.orchestrator.teacher.client.base_url == ["http://127.0.0.1:9001/v1"]
    assert config.orchestrator.teacher.model.name == "HuggingFaceTB/SmolLM2-360M-Instruct"
    (tmp_path / "orch.toml").write_text(doc_block("teacher-orchestrator"))
    config = parse_config(RLConfig, ["@", str(tmp_path / "orch.toml")])
    assert config.teacher is None and config.orchestrator.teacher.client.base_url == ["http://10.0.0.5:8100/v1"]
    with pytest.raises(ConfigError, match=r"client\.base_url \(the teacher server's URL\) is required"):
        parse_config(RLConfig, ["--orchestrator.teacher.model.name", "t", "--orchestrator.teacher.client.api-key", "k"])
