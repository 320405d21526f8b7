"""The orchestrator's tokenizer loads on first use: single-turn environments never load it (nor transformers), and
once used it answers exactly as `AutoTokenizer` does."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

from transformers import AutoTokenizer

from prime_rl.environments import load_environments
from prime_rl.utils.config.sections import EnvConfig
from prime_rl.utils.lazy_tokenizer import LazyTokenizer

SETUP_IN_CHILD = """
import sys
from prime_rl.environments import load_environments
from prime_rl.orchestrator.orchestrator import setup_tokenizer
from prime_rl.orchestrator.config import OrchestratorConfig

config = OrchestratorConfig(model={"name": sys.argv[1]}, env=[{"id": "one-word"}])
tokenizer = setup_tokenizer(config)
load_environments(config.env, tokenizer)
print(tokenizer.loaded, "transformers" in sys.modules)
"""


def test_single_turn_environments_never_load_the_tokenizer_nor_transformers(tiny_model_dir):
    out = subprocess.run(
        [sys.executable, "-c", SETUP_IN_CHILD, str(tiny_model_dir)], capture_output=True, text=True, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def test_the_tokenizer_loads_once_on_first_use_and_answers_as_auto_tokenizer(tiny_model_dir):
    lazy = LazyTokenizer(str(tiny_model_dir))
    load_environments([EnvConfig(id="one-word")], lazy)
    assert not lazy.loaded and copy.copy(lazy).loaded is False
    eager = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert lazy.encode("Paris, France") == eager.encode("Paris, France")
    assert lazy.loaded and lazy.load() is lazy.load()
    assert lazy("hi")["input_ids"] == eager("hi")["input_ids"] and len(lazy) == len(eager)
    messages = [{"role": "user", "content": "hi"}]
    assert lazy.apply_chat_template(messages, tokenize=False) == eager.apply_chat_template(messages, tokenize=False)


def test_the_rl_trainer_loads_its_tokenizer_only_to_export(tiny_model_dir, tmp_path, monkeypatch):
    from prime_rl.trainer.rl import train as train_module
    from prime_rl.trainer.rl.config import RLTrainerConfig
    from prime_rl.utils.config import parse_config

    loads = []
    real = train_module.setup_tokenizer
    monkeypatch.setattr(train_module, "setup_tokenizer", lambda config: loads.append(config.name) or real(config))
    monkeypatch.setattr(train_module, "broadcast_weights", lambda *a: loads.append("broadcast") or None)
    args = ["--model.name", str(tiny_model_dir), "--output-dir", str(tmp_path), "--max-steps", "2", "--seq-len", "32"]
    args += ["--data.fake", "--data.fake-batch-size", "2", "--log.level", "warning"]
    train_module.train(parse_config(RLTrainerConfig, args))
    # Training and broadcasting need no tokenizer; it loads for the final export.
    assert loads == ["broadcast", "broadcast", str(tiny_model_dir)]
    saved = AutoTokenizer.from_pretrained(tmp_path / "weights" / "step_2")
    assert saved.encode("Paris") == AutoTokenizer.from_pretrained(tiny_model_dir).encode("Paris")
