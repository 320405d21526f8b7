"""`[loss]` and `[advantage]` custom tables share one config base and one loader (`utils/plugins.py`)."""

from __future__ import annotations

import sys

import pytest

from prime_rl.orchestrator.config import CustomAdvantageConfig
from prime_rl.trainer.rl.config import CustomLossConfig
from prime_rl.utils.config import ConfigError
from prime_rl.utils.plugins import CustomPluginConfig


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugin_mod.py").write_text("def scale(inputs, factor=1.0):\n    return inputs * factor\n")
    yield "plugin_mod"
    sys.modules.pop("plugin_mod", None)


def test_both_custom_tables_are_one_config_with_the_seed_fields():
    for cls in (CustomLossConfig, CustomAdvantageConfig):
        assert issubclass(cls, CustomPluginConfig)
        assert list(cls.model_fields) == ["type", "import_path", "kwargs"]
        assert cls(import_path="m.f").type == "custom"


@pytest.mark.parametrize("cls", [CustomLossConfig, CustomAdvantageConfig])
def test_load_plugin_binds_kwargs_and_checks_every_result(plugin_module, cls):
    seen = []

    def check(out, inputs, name):
        seen.append((out, inputs, name))
        return out

    fn = cls(import_path="plugin_mod:scale", kwargs={"factor": 3}).load_plugin(check)
    assert fn(2) == 6
    assert seen == [(6, 2, "plugin_mod:scale")]
    with pytest.raises(ConfigError, match=r"import_path `plugin_mod.scale`: kwargs \{'eps': 1\} do not fit signature"):
        cls(import_path="plugin_mod.scale", kwargs={"eps": 1}).load_plugin(check)
    with pytest.raises(ConfigError, match=r"module `plugin_mod` has no attribute `scal` \(close names: scale\)"):
        cls(import_path="plugin_mod.scal").load_plugin(check)
