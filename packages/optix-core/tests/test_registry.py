"""The plugin registry in-process: what is listed, and building agents from it."""

from __future__ import annotations

import types
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest

import optix_core
from optix_core import hookimpl, plugins
from optix_core.algorithms.cem import CEMAgent
from optix_core.hyperparams import HyperparamError
from optix_core.plugins import PluginConflictError, get_registry, reset_registry
from optix_core.registry import (
    RegistryError,
    action_space_kind,
    agents,
    backends,
    default_algorithm,
    env_spaces,
    env_spec,
    evaluators,
    find_agent,
    make_agent,
    provider,
    reward_threshold,
    sets_no_time_limit,
    window_pipeline,
)
from optix_core.specs import AgentSpec, BackendSpec, EvaluatorSpec, load_object
from optix_core.types import HyperparamSet

CEM_FACTORY = "optix_core.algorithms.cem:make_cem"


@pytest.fixture
def core_only(monkeypatch):
    """A registry holding optix-core's own plugin only, whatever else is installed."""
    monkeypatch.setenv("OPTIX_LOAD_PLUGINS", "")
    reset_registry()
    yield get_registry()
    reset_registry()  # the next test discovers the installed plugins again


def register(registry, spec, distribution="test-plugin"):
    """Register ``spec`` as a plugin distributed as ``distribution`` would."""
    registry.ensure_loaded()
    registry._registrar(type(spec), distribution)(spec)


@dataclass
class FakeDistribution:
    name: str
    version: str = "1.0"


class FakeEntryPoint:
    """An entry point in the ``optix`` group whose module is built in memory,
    and which counts how often it is imported."""

    def __init__(self, distribution: str, module: types.ModuleType) -> None:
        self.name = distribution
        self.value = module.__name__
        self.dist = FakeDistribution(distribution)
        self.module = module
        self.loads = 0

    def load(self) -> types.ModuleType:
        self.loads += 1
        return self.module


def agent_plugin(module_name: str, *specs: AgentSpec) -> types.ModuleType:
    """A plugin module whose agent hook registers ``specs``."""
    module = types.ModuleType(module_name)

    @hookimpl
    def optix_register_agents(register):
        for spec in specs:
            register(spec)

    module.optix_register_agents = optix_register_agents
    return module


@pytest.fixture
def installed(monkeypatch):
    """Replace the installed entry points with fakes: ``installed(ep, ...)``."""

    def install(*eps: FakeEntryPoint) -> plugins.PluginRegistry:
        monkeypatch.setattr(plugins, "entry_points", lambda group: list(eps))
        reset_registry()
        return get_registry()

    yield install
    reset_registry()


class SpacesOnly:
    """Anything with gymnasium spaces can be handed to make_agent."""

    def __init__(self, observation_space, action_space):
        self.observation_space = observation_space
        self.action_space = action_space


# ---- what is listed -----------------------------------------------------------------


def test_agents_lists_cem_from_optix_cores_own_plugin():
    cem = [s for s in agents() if s.name == "cem" and s.backend == "numpy"]
    assert len(cem) == 1
    assert provider(cem[0]) == "optix-core"


def test_top_level_agents_stays_callable_after_a_cem_agent_is_built():
    """``optix_core.agents()`` is the documented public listing; importing the
    ``optix_core.agents`` subpackage (which building a CEM agent does) must not
    replace it with a module."""
    make_agent("cem", "CartPole-v1")
    assert callable(optix_core.agents), f"optix_core.agents is {optix_core.agents!r}"
    assert any(s.name == "cem" for s in optix_core.agents())
    assert optix_core.make_agent is make_agent


def test_core_plugin_registers_cem_and_the_default_evaluator(core_only):
    (spec,) = agents()
    assert (spec.name, spec.backend) == ("cem", "numpy")
    assert spec.factory == CEM_FACTORY
    assert spec.action_spaces == ("discrete", "continuous")
    assert spec.on_policy is True
    assert spec.defaults["population_size"] == 16
    assert set(spec.search_space) <= set(spec.defaults)
    assert spec.summary
    assert provider(spec) == "optix-core"
    assert [e.name for e in evaluators()] == ["episode-return"]
    assert backends() == []
    assert [p.distribution for p in core_only.plugins] == ["optix-core"]
    assert core_only.plugins[0].error is None


def test_agents_are_sorted_by_name_then_backend_preference(core_only):
    for name, backend in [("zeta", "numpy"), ("cem", "tf"), ("cem", "torch"), ("cem", "jax")]:
        register(core_only, AgentSpec(name, backend, CEM_FACTORY, ("discrete",)))
    assert [(s.name, s.backend) for s in agents()] == [
        ("cem", "torch"),
        ("cem", "jax"),
        ("cem", "tf"),
        ("cem", "numpy"),
        ("zeta", "numpy"),
    ]
    assert find_agent("cem", "discrete").backend == "torch"
    assert find_agent("cem", "discrete", backend="numpy").backend == "numpy"
    # Only the framework-free one serves continuous actions.
    assert find_agent("cem", "continuous").backend == "numpy"


# ---- make_agent ------------------------------------------------------------------------


def test_make_agent_from_an_env_id_an_env_and_a_vector_env():
    by_id = make_agent("cem", "CartPole-v1", seed=0)
    assert isinstance(by_id, CEMAgent)
    env = gym.make("Pendulum-v1")
    by_env = make_agent("cem", env, seed=0)
    assert by_env.act(np.zeros((2, 3)), deterministic=True).shape == (2, 1)
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    by_vector = make_agent("cem", envs, seed=0)
    envs.close()
    assert by_vector.mean.shape == by_id.mean.shape == (4 * 2 + 2,)


def test_make_agent_merges_hyperparams_over_the_defaults():
    agent = make_agent("cem", "CartPole-v1", hyperparams={"population_size": 8})
    params = agent.get_hyperparams().params
    assert params["population_size"] == 8
    assert params["elite_frac"] == 0.25
    agent = make_agent(
        "cem", "CartPole-v1", hyperparams=HyperparamSet({"hidden_size": 4}, episode_id=3)
    )
    assert agent.get_hyperparams().episode_id == 3
    assert agent.mean.shape == (4 * 4 + 4 + 4 * 2 + 2,)


def test_same_seed_same_agent():
    obs = np.random.default_rng(0).normal(size=(8, 4))
    starts = np.ones(8, dtype=bool)
    a = make_agent("cem", "CartPole-v1", seed=5).act_info(obs, starts)[1]["params"]
    b = make_agent("cem", "CartPole-v1", seed=5).act_info(obs, starts)[1]["params"]
    c = make_agent("cem", "CartPole-v1", seed=6).act_info(obs, starts)[1]["params"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_algorithm_lists_what_is_installed(core_only):
    with pytest.raises(RegistryError) as excinfo:
        make_agent("nope", "CartPole-v1")
    message = str(excinfo.value)
    assert "unknown algorithm 'nope'" in message
    assert "installed: cem" in message
    assert "pip install optix-torch" in message


def test_unknown_algorithm_names_every_installed_one(core_only):
    register(core_only, AgentSpec("ppo", "torch", CEM_FACTORY, ("discrete",)))
    with pytest.raises(RegistryError, match="installed: cem, ppo"):
        make_agent("sac", "Pendulum-v1")


def test_unknown_backend(core_only):
    with pytest.raises(RegistryError) as excinfo:
        make_agent("cem", "CartPole-v1", backend="torch")
    message = str(excinfo.value)
    assert "no 'torch' backend" in message
    assert "offered by: numpy" in message
    assert "optix-torch" in message


def test_unsupported_action_space_kind():
    env = SpacesOnly(gym.spaces.Box(-1, 1, (3,)), gym.spaces.MultiDiscrete([2, 3]))
    with pytest.raises(RegistryError, match=r"'cem' supports .* not multi_discrete"):
        make_agent("cem", env)


def test_algorithm_asked_for_an_action_space_it_does_not_support(core_only):
    register(core_only, AgentSpec("dqn", "torch", CEM_FACTORY, ("discrete",)))
    with pytest.raises(RegistryError) as excinfo:
        make_agent("dqn", "Pendulum-v1")
    message = str(excinfo.value)
    assert "'dqn' supports discrete action spaces, not continuous" in message
    assert "optix list" in message


def test_unknown_environment():
    with pytest.raises(RegistryError, match="unknown environment 'NoSuchEnv-v0'"):
        make_agent("cem", "NoSuchEnv-v0")


def test_reward_threshold_is_the_score_the_environment_calls_solved():
    assert reward_threshold(env_spec("CartPole-v1")) == 475.0
    assert reward_threshold(env_spec("LunarLanderContinuous-v3")) == 200.0
    assert reward_threshold(env_spec("Pendulum-v1")) is None  # names none
    assert reward_threshold(None) is None  # an environment without a spec


class FramesLimited(gym.Env):
    """An Atari-like environment: it cuts episodes itself, counting frames."""

    observation_space = gym.spaces.Box(-1, 1, (4,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, max_num_frames_per_episode: int = 108_000) -> None:
        self.max_frames = max_num_frames_per_episode


def test_an_environment_registered_without_a_time_limit_is_known_as_such():
    assert sets_no_time_limit(env_spec("CliffWalking-v1"))
    assert not sets_no_time_limit(env_spec("CartPole-v1"))  # 500 steps
    assert not sets_no_time_limit(None)  # nothing known of it
    gym.register(
        "FramesLimited-v0", entry_point=FramesLimited, kwargs={"max_num_frames_per_episode": 400}
    )
    try:
        assert not sets_no_time_limit(env_spec("FramesLimited-v0"))
    finally:
        del gym.registry["FramesLimited-v0"]


def test_env_kwargs_build_the_environment_the_agent_and_the_spec_read():
    assert env_spaces("LunarLander-v3")[1] == gym.spaces.Discrete(4)
    assert isinstance(env_spaces("LunarLander-v3", {"continuous": True})[1], gym.spaces.Box)
    assert sets_no_time_limit(env_spec("CliffWalking-v1"))
    assert not sets_no_time_limit(env_spec("CliffWalking-v1", {"max_episode_steps": 200}))
    with pytest.raises(RegistryError, match="CartPole-v1 does not take the arguments"):
        env_spaces("CartPole-v1", {"gravity": 3})


def fixed_pipeline(env_id: str, n_envs: int, window_size: int, seed: int | None) -> str:
    """A pipeline factory that takes no options."""
    return env_id


def test_a_pipeline_that_takes_no_env_kwargs_is_named_before_it_is_called():
    path = f"{__name__}:fixed_pipeline"
    assert window_pipeline("CartPole-v1", 1, 8, 0, path) == "CartPole-v1"
    with pytest.raises(RegistryError, match=f"the pipeline {path} does not take environment"):
        window_pipeline("CartPole-v1", 1, 8, 0, path, env_kwargs={"max_episode_steps": 5})
    with pytest.raises(RegistryError, match=r"does not take options \['n_actors'\]"):
        window_pipeline("CartPole-v1", 1, 8, 0, path, {"n_actors": 2})
    with pytest.raises(RegistryError, match=r"options \['n_actors'\] need an algorithm's own"):
        window_pipeline("CartPole-v1", 1, 8, 0, None, {"n_actors": 2}, {"max_episode_steps": 5})


def test_window_pipeline_builds_its_environments_with_env_kwargs():
    pipeline = window_pipeline("CartPole-v1", 2, 8, 0, env_kwargs={"max_episode_steps": 3})
    try:
        assert pipeline.envs.envs[0].spec.max_episode_steps == 3
    finally:
        pipeline.close()


def test_out_of_range_hyperparams_are_refused_before_building():
    with pytest.raises(HyperparamError, match="population_size=1 is outside"):
        make_agent("cem", "CartPole-v1", hyperparams={"population_size": 1})
    with pytest.raises(HyperparamError, match="unknown hyperparameter 'learning_rate'"):
        make_agent("cem", "CartPole-v1", hyperparams={"learning_rate": 1e-3})


def test_cem_refuses_an_accelerator():
    with pytest.raises(ValueError, match="CPU"):
        make_agent("cem", "CartPole-v1", device="cuda")
    assert isinstance(make_agent("cem", "CartPole-v1", device="cpu"), CEMAgent)


# ---- default_algorithm ---------------------------------------------------------------------


def test_default_algorithm_is_cem_with_optix_core_alone(core_only):
    assert default_algorithm("discrete").name == "cem"
    assert default_algorithm("continuous").name == "cem"


def test_default_algorithm_prefers_ppo_where_a_backend_offers_it(core_only):
    register(core_only, AgentSpec("ppo", "torch", CEM_FACTORY, ("discrete",)))
    register(core_only, AgentSpec("a2c", "torch", CEM_FACTORY, ("continuous",)))
    assert (default_algorithm("discrete").name, default_algorithm("discrete").backend) == (
        "ppo",
        "torch",
    )
    # No ppo for continuous actions: the preferred backend's first agent.
    assert default_algorithm("continuous").name == "a2c"


def test_default_algorithm_without_any_agent_for_the_space(core_only):
    core_only.ensure_loaded()
    core_only.items[AgentSpec].clear()
    register(core_only, AgentSpec("dqn", "torch", CEM_FACTORY, ("discrete",)))
    with pytest.raises(RegistryError, match="no installed agent supports continuous"):
        default_algorithm("continuous")


def test_default_algorithm_on_a_requested_backend_is_its_ppo():
    """`optix train CartPole-v1 --backend torch` trains PPO, not the alphabetically first."""
    for kind in ("discrete", "continuous"):
        spec = default_algorithm(kind, backend="torch")
        assert (spec.name, spec.backend) == ("ppo", "torch")
    assert default_algorithm("discrete", backend="numpy").name == "cem"


def test_default_algorithm_on_a_backend_without_ppo_follows_the_preference_order(core_only):
    for name, spaces in [
        ("a2c", ("discrete", "continuous")),
        ("dqn", ("discrete",)),
        ("sac", ("continuous",)),
        ("zeta", ("discrete", "continuous")),
    ]:
        register(core_only, AgentSpec(name, "jax", CEM_FACTORY, spaces))
    register(core_only, AgentSpec("ppo", "torch", CEM_FACTORY, ("discrete", "continuous")))
    assert default_algorithm("discrete", backend="jax").name == "dqn"
    assert default_algorithm("continuous", backend="jax").name == "sac"
    register(core_only, AgentSpec("b2c", "tf", CEM_FACTORY, ("discrete",)))
    register(core_only, AgentSpec("a3c", "tf", CEM_FACTORY, ("discrete",)))
    assert default_algorithm("discrete", backend="tf").name == "a3c"  # then by name


def test_default_algorithm_on_a_backend_with_nothing_for_the_space_says_what_it_offers(
    core_only,
):
    register(core_only, AgentSpec("dqn", "jax", CEM_FACTORY, ("discrete",)))
    register(core_only, AgentSpec("a2c", "jax", CEM_FACTORY, ("discrete",)))
    with pytest.raises(RegistryError) as excinfo:
        default_algorithm("continuous", backend="jax")
    message = str(excinfo.value)
    assert "no 'jax' agent supports continuous action spaces" in message
    assert "'jax' offers: a2c (discrete), dqn (discrete)" in message


def test_an_algorithm_an_installed_backend_does_not_offer_is_named_as_such(core_only):
    register(core_only, BackendSpec("jax", "optix-jax", "m:f", "m:f", "m:f"), "optix-jax")
    register(core_only, AgentSpec("dqn", "jax", CEM_FACTORY, ("discrete",)), "optix-jax")
    register(core_only, AgentSpec("rainbow", "torch", CEM_FACTORY, ("discrete",)), "optix-torch")
    with pytest.raises(RegistryError) as excinfo:
        make_agent("rainbow", "CartPole-v1", backend="jax")
    message = str(excinfo.value)
    assert "the 'jax' backend (optix-jax) does not offer 'rainbow'" in message
    assert "offered by: torch" in message and "Install" not in message


def test_default_algorithm_on_a_backend_that_is_not_installed(core_only):
    with pytest.raises(RegistryError) as excinfo:
        default_algorithm("discrete", backend="tf")
    message = str(excinfo.value)
    assert "no 'tf' backend installed" in message
    assert "installed: numpy" in message
    assert "optix-tf" in message


# ---- registration rules ----------------------------------------------------------------------


def test_two_distributions_registering_the_same_agent_is_a_clear_error(core_only):
    register(core_only, AgentSpec("ppo", "torch", CEM_FACTORY, ("discrete",)), "optix-torch")
    with pytest.raises(PluginConflictError) as excinfo:
        register(core_only, AgentSpec("ppo", "torch", CEM_FACTORY, ("discrete",)), "ppo-plus")
    assert "'optix-torch'" in str(excinfo.value) and "'ppo-plus'" in str(excinfo.value)
    # The same name on another backend is no conflict.
    register(core_only, AgentSpec("ppo", "jax", CEM_FACTORY, ("discrete",)), "optix-jax")


def test_a_conflict_while_loading_is_the_same_error_on_every_call_and_loads_nothing_twice(
    installed,
):
    twin = AgentSpec("twin", "example", CEM_FACTORY, ("discrete",))
    solo = AgentSpec("solo", "example", CEM_FACTORY, ("discrete",))
    first = FakeEntryPoint("optix-first", agent_plugin("first_plugin", solo, twin))
    second = FakeEntryPoint("optix-second", agent_plugin("second_plugin", twin))
    registry = installed(first, second)
    messages = []
    for _ in range(3):
        with pytest.raises(PluginConflictError) as excinfo:
            agents()
        messages.append(str(excinfo.value))
    assert messages[0] == messages[1] == messages[2]
    assert "twin/example" in messages[0]
    assert "'optix-first'" in messages[0] and "'optix-second'" in messages[0]
    assert (first.loads, second.loads) == (1, 1), "a failed load is not retried"
    # Nothing of the failed load is kept: no plugin listed twice, no half-filled table.
    assert registry.plugins == []
    assert all(not table for table in registry.items.values())


def test_registering_the_wrong_kind_is_a_type_error(core_only):
    core_only.ensure_loaded()
    spec = EvaluatorSpec("x", "optix_core.evaluator:EpisodeReturnEvaluator")
    with pytest.raises(TypeError, match="expected AgentSpec, got EvaluatorSpec"):
        core_only._registrar(AgentSpec, "test")(spec)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action_spaces": ("multibinary",)}, "action_spaces"),
        ({"action_spaces": ()}, "action_spaces"),
        ({"factory": "no_colon"}, "module:callable"),
        (
            {"presets": {"CartPole-v1": {"hyperparms": {}}}},
            "only 'hyperparams', 'rollout' and 'network'",
        ),
        (
            {"defaults": {"lr": 1.0}, "presets": {"CartPole-v1": {"hyperparams": {"lr2": 1}}}},
            r"preset 'CartPole-v1' sets unknown hyperparameters \['lr2'\]",
        ),
    ],
)
def test_agent_spec_validation(kwargs, message):
    fields = {
        "name": "x",
        "backend": "numpy",
        "factory": CEM_FACTORY,
        "action_spaces": ("discrete",),
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        AgentSpec(**fields)


def test_agent_spec_normalises_action_spaces_and_loads_its_factory():
    spec = AgentSpec("x", "numpy", CEM_FACTORY, ["discrete"])
    assert spec.action_spaces == ("discrete",)
    assert spec.load_factory() is load_object(CEM_FACTORY)
    assert load_object("optix_core.algorithms.cem:CEMAgent.act") is CEMAgent.act
    with pytest.raises(ValueError, match="module:attribute"):
        load_object("optix_core.algorithms.cem")


def test_an_environments_preset_overrides_the_defaults_and_rollout_for_it_alone():
    spec = AgentSpec(
        "x",
        "numpy",
        CEM_FACTORY,
        ("continuous",),
        defaults={"gamma": 0.99, "lr": 3e-4},
        rollout={"n_envs": 8, "window_size": 256},
        presets={"Pendulum-v1": {"hyperparams": {"gamma": 0.9}, "rollout": {"n_envs": 4}}},
    )
    assert spec.settings("Pendulum-v1") == (
        {"gamma": 0.9, "lr": 3e-4},
        {"n_envs": 4, "window_size": 256},
    )
    assert spec.settings("MountainCarContinuous-v0") == (spec.defaults, spec.rollout)


def test_action_space_kind():
    assert action_space_kind(gym.spaces.Discrete(3)) == "discrete"
    assert action_space_kind(gym.spaces.Box(-1, 1, (2,))) == "continuous"
    assert action_space_kind(gym.spaces.MultiDiscrete([2, 3])) == "multi_discrete"
    assert action_space_kind(gym.spaces.MultiBinary(3)) == "multi_binary"
    with pytest.raises(RegistryError, match="MultiDiscrete or MultiBinary"):
        action_space_kind(gym.spaces.Tuple((gym.spaces.Discrete(2),)))


def test_a_network_option_the_factory_does_not_take_is_named_before_any_work():
    with pytest.raises(RegistryError, match=r"does not take the network options \['hidden'\]"):
        make_agent("cem", "CartPole-v1", network={"hidden": [8]})


def test_a_preset_may_hold_the_factorys_network_options():
    spec = AgentSpec(
        name="x", backend="numpy", factory="m:f", action_spaces=("discrete",),
        presets={"A-v0": {"network": {"hidden": [64, 64]}}},
    )  # fmt: skip
    assert spec.network("A-v0") == {"hidden": [64, 64]} and spec.network("B-v0") == {}
    with pytest.raises(ValueError, match="may hold only 'hyperparams', 'rollout' and 'network'"):
        AgentSpec(
            name="x", backend="numpy", factory="m:f", action_spaces=("discrete",),
            presets={"A-v0": {"net_arch": [64]}},
        )  # fmt: skip
