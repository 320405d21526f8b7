"""Runs a list of trainer runs in one torchrun launch (`test_trainer_dist.py`): `[["rl" | "sft", [args...]], ...]`."""

import json
import sys
from pathlib import Path

from prime_rl.trainer.rl.config import RLTrainerConfig
from prime_rl.trainer.rl.train import train as rl_train
from prime_rl.trainer.sft.config import SFTConfig
from prime_rl.trainer.sft.train import train as sft_train
from prime_rl.utils.config import parse_config

COMMANDS = {"rl": (RLTrainerConfig, rl_train), "sft": (SFTConfig, sft_train)}

for kind, args in json.loads(Path(sys.argv[1]).read_text()):
    config_cls, train = COMMANDS[kind]
    train(parse_config(config_cls, args))
