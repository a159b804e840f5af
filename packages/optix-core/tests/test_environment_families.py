"""Environment families: ``prefix:Name`` ids routed to the plugin that registered the prefix.

The family here is a test plugin's: its ``make`` lives in a module built in
memory and builds gymnasium's CartPole, counting the names it was asked for, so
every route (make_env, make_agent, evaluation, pipelines, the CLI) can be seen
going through it.
"""

from __future__ import annotations

import json
import sys
import types

import gymnasium as gym
import numpy as np
import pytest

import optix_core
from optix_core import hookimpl, plugins
from optix_core.cli import main
from optix_core.evaluation import PolicyEvaluation, evaluate_policy
from optix_core.pipeline import VectorBatchPipeline
from optix_core.plugins import PluginConflictError, get_registry, reset_registry
from optix_core.registry import (
    RegistryError,
    environment_family,
    environments,
    make_agent,
    make_env,
    provider,
)
from optix_core.specs import EnvironmentSpec

FAMILY = EnvironmentSpec(
    prefix="toy",
    distribution="optix-toy",
    make="optix_toy_envs:make",
    extra="optix-toy[sim]",
    summary="CartPole by another name",
)


class ToyFamily:
    """The in-memory module behind the ``toy`` family: records what it was asked."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dict]] = []
        self.pipelines: list[tuple] = []
        self.module = types.ModuleType("optix_toy_envs")
        self.module.make = self.make
        self.module.make_pipeline = self.make_pipeline
        self.module.make_refusing_pipeline = self.make_refusing_pipeline
        self.evaluations: list[tuple] = []
        self.module.evaluate = self.evaluate
        self.module.evaluate_refusing = self.evaluate_refusing

    def make(self, name: str, **kwargs) -> gym.Env:
        if name != "CartPole":
            raise ValueError(f"no toy environment {name!r}; toy has: CartPole")
        self.made.append((name, kwargs))
        return gym.make("CartPole-v1", **kwargs)

    def make_pipeline(self, env_id: str, n_envs: int, window_size: int, seed: int):
        self.pipelines.append((env_id, n_envs, window_size, seed))
        return VectorBatchPipeline(env_id=env_id, n_envs=n_envs, window_size=window_size, seed=seed)

    def evaluate(self, agent, env_id: str, episodes: int, seed: int, deterministic: bool):
        self.evaluations.append((agent, env_id, episodes, seed, deterministic))
        return PolicyEvaluation(np.full(episodes, 123.0), np.full(episodes, 7))

    def evaluate_refusing(self, agent, env_id: str, episodes: int, seed: int, deterministic: bool):
        self.evaluations.append((agent, env_id, episodes, seed, deterministic))
        return None

    def make_refusing_pipeline(self, env_id: str, n_envs: int, window_size: int, seed: int):
        return RefusingPipeline(env_id=env_id, n_envs=n_envs, window_size=window_size, seed=seed)


class RefusingPipeline(VectorBatchPipeline):
    """A family pipeline that drives only agents of its own kind."""

    def bind(self, agent, *, acting_only: bool = False) -> None:
        raise ValueError("the toy pipeline drives toy agents only, not this one")


def register(registry: plugins.PluginRegistry, spec: EnvironmentSpec, distribution: str) -> None:
    """Register ``spec`` as the plugin of ``distribution`` would."""
    registry.ensure_loaded()
    registry._registrar(EnvironmentSpec, distribution)(spec)


@pytest.fixture
def core_only(monkeypatch):
    """optix-core's own plugin only, whatever else is installed."""
    monkeypatch.setenv("OPTIX_LOAD_PLUGINS", "")
    reset_registry()
    yield get_registry()
    reset_registry()


@pytest.fixture
def toy(core_only, monkeypatch):
    """The ``toy`` family, registered by the optix-toy distribution."""
    family = ToyFamily()
    monkeypatch.setitem(sys.modules, "optix_toy_envs", family.module)
    register(core_only, FAMILY, "optix-toy")
    return family


def test_the_family_is_listed_with_its_provider(toy):
    assert environments() == [FAMILY]
    assert optix_core.environments() == [FAMILY]
    assert optix_core.EnvironmentSpec is EnvironmentSpec
    assert provider(FAMILY) == "optix-toy"
    assert environment_family("toy:CartPole") is FAMILY
    assert environment_family("CartPole-v1") is None
    assert environment_family("other:CartPole") is None


def test_make_env_routes_the_name_part_and_keywords_to_the_family(toy):
    env = make_env("toy:CartPole", max_episode_steps=7)
    assert toy.made == [("CartPole", {"max_episode_steps": 7})]
    assert env.spec.max_episode_steps == 7
    env.close()


def test_a_name_the_family_does_not_have_is_one_line(toy):
    with pytest.raises(RegistryError) as excinfo:
        make_env("toy:MountainCar")
    assert str(excinfo.value) == (
        "unknown environment 'toy:MountainCar': no toy environment 'MountainCar'; toy has: CartPole"
    )


def test_an_unknown_prefix_names_the_installed_families(toy):
    with pytest.raises(RegistryError) as excinfo:
        make_env("brax:Ant")
    message = str(excinfo.value)
    assert "unknown environment family 'brax' in 'brax:Ant'" in message
    assert "installed families: toy (optix-toy)" in message
    assert "\n" not in message


def test_gymnasiums_own_module_form_still_works(toy):
    env = make_env("gymnasium.envs.classic_control:CartPole-v1")
    assert env.action_space == gym.spaces.Discrete(2)
    env.close()
    assert toy.made == []


def test_a_family_whose_library_is_missing_names_the_extra(core_only):
    spec = EnvironmentSpec("sim", "optix-sim", "optix_sim_not_installed:make", extra="optix-sim[x]")
    register(core_only, spec, "optix-sim")
    with pytest.raises(RegistryError) as excinfo:
        make_env("sim:World")
    assert str(excinfo.value) == (
        "'sim:World' needs optix_sim_not_installed, which is not installed: "
        "pip install 'optix-sim[x]'"
    )


def test_agents_evaluation_and_pipelines_take_family_ids(toy):
    agent = make_agent("cem", "toy:CartPole", seed=0)
    result = evaluate_policy(agent, "toy:CartPole", episodes=2, n_envs=2, seed=0)
    assert len(result.returns) == 2 and (result.returns >= 8).all()
    pipeline = VectorBatchPipeline(env_id="toy:CartPole", n_envs=2, window_size=4, agent=agent)
    window = next(pipeline.episodes())
    pipeline.close()
    assert window.observations.shape == (4, 2, 4)
    assert len(toy.made) >= 5  # a probe for the spaces, then every environment built


def family_with_evaluate(registry: plugins.PluginRegistry, evaluate: str) -> EnvironmentSpec:
    registry.items[EnvironmentSpec].clear()
    spec = EnvironmentSpec("toy", "optix-toy", "optix_toy_envs:make", evaluate=evaluate)
    register(registry, spec, "optix-toy")
    return spec


def test_evaluation_goes_to_the_familys_evaluate(toy, core_only):
    family_with_evaluate(core_only, "optix_toy_envs:evaluate")
    agent = make_agent("cem", "toy:CartPole", seed=0)
    made = len(toy.made)
    result = evaluate_policy(agent, "toy:CartPole", episodes=3, seed=5, deterministic=False)
    assert toy.evaluations == [(agent, "toy:CartPole", 3, 5, False)]
    assert result.returns.tolist() == [123.0] * 3 and result.env_steps == 21
    assert len(toy.made) == made  # no environment was built: nothing stepped from Python
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        evaluate_policy(agent, "toy:CartPole", episodes=0)
    assert len(toy.evaluations) == 1


def test_evaluation_with_env_kwargs_or_a_callable_is_stepped_from_python(toy, core_only):
    family_with_evaluate(core_only, "optix_toy_envs:evaluate")
    agent = make_agent("cem", "toy:CartPole", seed=0)
    result = evaluate_policy(
        agent, "toy:CartPole", episodes=2, n_envs=2, env_kwargs={"max_episode_steps": 5}
    )
    assert (result.lengths <= 5).all()
    evaluate_policy(agent, lambda: make_env("toy:CartPole"), episodes=2, n_envs=2)
    assert toy.evaluations == []


def test_a_family_evaluate_returning_none_falls_back_to_python(toy, core_only):
    family_with_evaluate(core_only, "optix_toy_envs:evaluate_refusing")
    agent = make_agent("cem", "toy:CartPole", seed=0)
    result = evaluate_policy(agent, "toy:CartPole", episodes=2, n_envs=2, seed=0)
    assert toy.evaluations == [(agent, "toy:CartPole", 2, 0, True)]
    assert len(result.returns) == 2 and (result.returns >= 8).all()
    assert ("CartPole", {}) in toy.made  # played on the family's environments, from Python


def test_a_family_evaluate_whose_library_is_missing_falls_back_to_make_env(core_only):
    spec = EnvironmentSpec(
        "sim", "optix-sim", "optix_sim_not_installed:make", evaluate="optix_sim_not_installed:ev"
    )
    register(core_only, spec, "optix-sim")
    with pytest.raises(RegistryError, match="needs optix_sim_not_installed"):
        evaluate_policy(object(), "sim:World", episodes=1)


def test_two_distributions_registering_one_prefix_is_an_error_naming_both(monkeypatch):
    def plugin(module_name: str) -> types.ModuleType:
        module = types.ModuleType(module_name)

        @hookimpl
        def optix_register_environments(register):
            register(FAMILY)

        module.optix_register_environments = optix_register_environments
        return module

    class EntryPoint:
        def __init__(self, distribution: str) -> None:
            self.name = distribution
            self.value = distribution.replace("-", "_")
            self.dist = types.SimpleNamespace(name=distribution, version="1.0")

        def load(self) -> types.ModuleType:
            return plugin(self.value)

    eps = [EntryPoint("optix-toy"), EntryPoint("toy-plus")]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)
    reset_registry()
    try:
        with pytest.raises(PluginConflictError) as excinfo:
            environments()
    finally:
        reset_registry()
    message = str(excinfo.value)
    assert "EnvironmentSpec 'toy'" in message
    assert "'optix-toy'" in message and "'toy-plus'" in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": ""}, "non-empty name without ':'"),
        ({"prefix": "a:b"}, "non-empty name without ':'"),
        ({"make": "no_colon"}, "make must be 'module:callable'"),
        ({"pipeline": "no_colon"}, "pipeline must be 'module:callable'"),
        ({"evaluate": "no_colon"}, "evaluate must be 'module:callable'"),
    ],
)
def test_environment_spec_validation(kwargs, message):
    fields = {"prefix": "toy", "distribution": "optix-toy", "make": "m:f", **kwargs}
    with pytest.raises(ValueError, match=message):
        EnvironmentSpec(**fields)


# ---- the optix command ----------------------------------------------------------------------


def test_optix_plugins_shows_each_plugins_families(core_only, capsys):
    register(core_only, FAMILY, "optix-core")
    assert main(["plugins"]) == 0
    (core,) = json.loads(capsys.readouterr().out)
    assert core["environments"] == [
        {
            "prefix": "toy",
            "summary": "CartPole by another name",
            "extra": "optix-toy[sim]",
            "pipeline": None,
        }
    ]


def test_optix_train_collects_through_the_familys_pipeline(toy, core_only, tmp_path, capsys):
    core_only.items[EnvironmentSpec].clear()
    spec = EnvironmentSpec(
        "toy", "optix-toy", "optix_toy_envs:make", "optix_toy_envs:make_pipeline"
    )
    register(core_only, spec, "optix-toy")
    argv = ["train", "toy:CartPole", "--algo", "cem", "--seed", "3", "--max-windows", "1"]
    status = main([*argv, "--selection-episodes", "1", "--run-dir", str(tmp_path)])
    assert status == 0, capsys.readouterr()
    assert toy.pipelines == [("toy:CartPole", 8, 500, 3)]  # cem's rollout settings
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["env_steps"] == 8 * 500
    assert np.isfinite(report["final_eval"]["mean"])


def test_optix_train_reports_a_pipeline_refusing_the_agent_in_one_line(
    toy, core_only, tmp_path, capsys
):
    core_only.items[EnvironmentSpec].clear()
    spec = EnvironmentSpec(
        "toy", "optix-toy", "optix_toy_envs:make", "optix_toy_envs:make_refusing_pipeline"
    )
    register(core_only, spec, "optix-toy")
    status = main(["train", "toy:CartPole", "--algo", "cem", "--run-dir", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert err == "optix: error: the toy pipeline drives toy agents only, not this one\n"
