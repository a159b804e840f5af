"""On-policy gSDE (``use_sde``) in optix-jax: PPO's and A2C's network, acting and its limits."""

from __future__ import annotations

import math

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import make_agent, registered_agent
from optix_core.testing.on_policy_gsde import OnPolicyGSDEConformance
from optix_jax.algorithms.a2c import FlaxAgent
from optix_jax.algorithms.ppo import FlaxPPOAgent
from optix_jax.pipelines import CompiledPipeline
from optix_jax.policies.networks import ActorCritic
from optix_jax.policies.sde import StateDependentActorCritic

PENDULUM = gym.make("Pendulum-v1")


class JaxForward:
    def policy_params(self, agent, obs):
        return agent._numpy_forward(agent.observed(obs))[0]


class TestPPOGSDE(JaxForward, OnPolicyGSDEConformance):
    algo = "ppo"
    backend = "jax"


class TestA2CGSDE(JaxForward, OnPolicyGSDEConformance):
    algo = "a2c"
    backend = "jax"


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_updates_log_probability_and_entropy_are_those_acting_recorded(algo) -> None:
    """What the jitted update reads (``StateDependentGaussian.log_prob`` and
    ``entropy`` in JAX) is the diagonal Gaussian of ``[μ ‖ log σ̃]``, unclamped,
    whose log-density acting recorded."""
    agent = make_agent(
        algo, "Pendulum-v1", backend="jax", device="cpu", seed=0,
        hyperparams={"use_sde": True, "log_std_init": -1.0},
    )  # fmt: skip
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    _, info = agent.act_info(obs, np.zeros(4, dtype=bool))
    params = jnp.asarray(agent._numpy_forward(obs)[0])
    log_prob = agent.distribution.log_prob(params, jnp.asarray(info["raw_actions"]))
    np.testing.assert_allclose(log_prob, info["log_probs"], rtol=1e-5, atol=1e-5)
    log_std = np.asarray(params[:, 1])
    entropy = log_std + 0.5 + 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(agent.distribution.entropy(params), entropy, rtol=1e-5)


@pytest.mark.parametrize("agent_cls", [FlaxPPOAgent, FlaxAgent])
def test_use_sde_needs_gsdes_network_and_gsdes_network_needs_use_sde(agent_cls) -> None:
    plain = ActorCritic(PENDULUM.observation_space, 2, seed=0)
    with pytest.raises(ValueError, match="use_sde=True, but the network does not output"):
        agent_cls(plain, hyperparams={"use_sde": True}, action_space=PENDULUM.action_space)
    sde = StateDependentActorCritic(PENDULUM.observation_space, PENDULUM.action_space)
    with pytest.raises(ValueError, match="use_sde=False, but the network outputs"):
        agent_cls(sde, hyperparams={"use_sde": False}, action_space=PENDULUM.action_space)


def test_the_network_is_sb3s_with_or_without_its_orthogonal_initialisation() -> None:
    def network(ortho_init: bool) -> StateDependentActorCritic:
        return StateDependentActorCritic(
            PENDULUM.observation_space, PENDULUM.action_space, log_std_init=-3.29,
            ortho_init=ortho_init, seed=0,
        )  # fmt: skip

    ortho, plain = network(True), network(False)
    log_std = np.asarray(ortho.log_std[...])
    assert np.all(log_std == np.float32(-3.29)) and log_std.shape == (64, 1)
    w = np.asarray(ortho.latent[0].kernel[...])  # [in, out]
    np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(3), atol=1e-5)  # gain √2
    assert np.linalg.norm(ortho.mean.kernel[...]) < 0.011  # gain 0.01 (a 64x1 orthogonal column)
    np.testing.assert_allclose(np.linalg.norm(ortho.value.kernel[...]), 1.0, rtol=1e-5)  # gain 1
    assert np.all(np.asarray(ortho.latent[0].bias[...]) == 0)
    # torch's nn.Linear: kernel and bias uniform in ±1/√fan_in
    bias = np.asarray(plain.latent[0].bias[...])
    assert not np.all(bias == 0) and np.abs(bias).max() <= 1 / math.sqrt(3)
    params, value = plain(np.zeros((5, 3), np.float32))
    assert params.shape == (5, 1 + 1 + 64) and value.shape == (5,)


def test_the_features_are_detached_in_the_variance() -> None:
    """log σ̃ moves log σ but not the actor's layers (SB3's ``learn_features=False``)."""
    network = StateDependentActorCritic(PENDULUM.observation_space, PENDULUM.action_space, seed=0)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    grads = nnx.grad(lambda net: jnp.sum(net(obs)[0][:, 1]))(network)
    assert np.abs(grads["log_std"][...]).max() > 0
    for layer in grads["latent"].values():
        assert not np.any(layer["kernel"][...]) and not np.any(layer["bias"][...])


def test_log_std_trains_and_a_checkpoint_keeps_it(tmp_path) -> None:
    """log σ is a parameter of the network: a window's update moves it, and
    ``load_weights`` brings it back into another agent."""
    agent = make_agent(
        "ppo", "Pendulum-v1", backend="jax", device="cpu", seed=0,
        hyperparams={"use_sde": True, "log_std_init": -1.0}, network={"hidden": [16, 16]},
    )  # fmt: skip
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=2, window_size=16, seed=0, agent=agent
    )
    agent.learn(pipeline.collect())
    pipeline.close()
    learned = agent.sde_log_std()
    assert learned.shape == (16, 1) and not np.allclose(learned, -1.0)
    agent.save_weights(str(tmp_path / "ckpt"))
    resumed = make_agent(
        "ppo", "Pendulum-v1", backend="jax", device="cpu", seed=7,
        hyperparams={"use_sde": True, "log_std_init": -1.0}, network={"hidden": [16, 16]},
    )  # fmt: skip
    resumed.load_weights(str(tmp_path / "ckpt"))
    np.testing.assert_array_equal(resumed.sde_log_std(), learned)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_plain_network_takes_ortho_init_too(algo) -> None:
    """A preset's ``ortho_init=False`` still builds when ``--hp use_sde=false`` turns
    gSDE off: SB3's option applies to every on-policy network."""

    def heads(ortho_init: bool):
        agent = make_agent(
            algo, "Pendulum-v1", backend="jax", device="cpu", seed=0,
            network={"ortho_init": ortho_init},
        )  # fmt: skip
        return agent.networks.actor.actor_head

    ortho, plain = heads(True), heads(False)
    assert np.all(np.asarray(ortho.hidden[0].bias[...]) == 0)
    bias = np.asarray(plain.hidden[0].bias[...])
    assert not np.all(bias == 0) and np.all(np.abs(bias) <= 1 / math.sqrt(3))


def test_ppos_mountain_car_preset_builds_gsdes_network_with_torchs_initialisation() -> None:
    spec = registered_agent("ppo", "jax")
    hyperparams, _ = spec.settings("MountainCarContinuous-v0")
    agent = make_agent(
        "ppo", "MountainCarContinuous-v0", backend="jax", device="cpu", seed=0,
        hyperparams=hyperparams, network=spec.network("MountainCarContinuous-v0"),
    )  # fmt: skip
    network = agent.networks.actor
    assert isinstance(network, StateDependentActorCritic)
    assert not np.all(np.asarray(network.mean.bias[...]) == 0)  # ortho_init False
    np.testing.assert_allclose(agent.sde_log_std(), -3.29)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_compiled_pipeline_refuses_use_sde_before_collecting(algo) -> None:
    """gymnax's pipeline samples on the device each step: it cannot hold gSDE's matrices."""
    agent = make_agent(
        algo, "gymnax:Pendulum-v1", backend="jax", device="cpu", seed=0,
        hyperparams={"use_sde": True},
    )  # fmt: skip
    with pytest.raises(ValueError, match=f"{algo}: use_sde explores with matrices held on"):
        CompiledPipeline("gymnax:Pendulum-v1", 2, 8, agent=agent)
