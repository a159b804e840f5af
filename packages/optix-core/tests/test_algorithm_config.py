"""The algorithm configs every backend shares (optix_core.algorithms.config)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

from optix_core.algorithms import config
from optix_core.algorithms.config import agent_specs

MODULES = sorted(info.name for info in pkgutil.iter_modules(config.__path__))


def test_one_spec_per_module_with_the_factory_convention():
    specs = agent_specs("x", "pkg")
    assert len(specs) == len(MODULES) >= 7
    for module_name, spec in zip(MODULES, specs, strict=True):
        module = importlib.import_module(f"optix_core.algorithms.config.{module_name}")
        assert "factory" not in module.SPEC  # the factory is each backend's
        assert spec.name == module.SPEC["name"]
        assert spec.backend == "x"
        assert spec.factory == f"pkg.algorithms.{module_name}:make_{module_name}"
        assert spec.defaults == module.DEFAULTS
        assert spec.search_space == module.SEARCH_SPACE
        assert spec.rollout == module.ROLLOUT
        assert spec.presets == getattr(module, "PRESETS", {})
        assert set(getattr(module, "ONLINE_SEARCH_SPACE", {})) <= set(module.DEFAULTS)
        assert set(module.BOUNDS) == set(module.DEFAULTS)
    specs[0].defaults["changed"] = 1  # each spec holds its own copies
    assert "changed" not in agent_specs("x", "pkg")[0].defaults


def test_names_restrict_and_an_unknown_name_is_a_clear_error():
    specs = agent_specs("x", "pkg", names=["sac", "recurrent-ppo"])
    assert [spec.name for spec in specs] == ["recurrent-ppo", "sac"]
    assert specs[0].factory == "pkg.algorithms.recurrent_ppo:make_recurrent_ppo"
    assert agent_specs("x", "pkg", names=[]) == []
    with pytest.raises(ValueError, match=r"'nope'.*known algorithms: a2c, dqn, ppo"):
        agent_specs("x", "pkg", names=["ppo", "nope"])


def test_importing_the_configs_imports_no_framework():
    code = (
        "import sys\n"
        "import optix_core.algorithms.config as c\n"
        "c.agent_specs('x', 'pkg')\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize("module_name", MODULES)
def test_every_preset_is_a_valid_setting_of_its_algorithm(module_name):
    from optix_core.hyperparams import check_hyperparams

    module = importlib.import_module(f"optix_core.algorithms.config.{module_name}")
    for env_id, preset in getattr(module, "PRESETS", {}).items():
        params = {**module.DEFAULTS, **preset.get("hyperparams", {})}
        check_hyperparams(params, module.BOUNDS, f"{module_name} on {env_id}")  # raises if bad
        assert set(preset.get("rollout", {})) <= {"n_envs", "window_size"}, env_id
