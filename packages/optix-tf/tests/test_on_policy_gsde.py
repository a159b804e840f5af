"""On-policy gSDE (``use_sde``) in optix-tf: PPO's and A2C's network, acting and checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import make_agent
from optix_core.testing.on_policy_gsde import OnPolicyGSDEConformance
from optix_tf.algorithms.a2c import TFAgent
from optix_tf.algorithms.ppo import TFPPOAgent
from optix_tf.policies.networks import ActorCritic
from optix_tf.policies.sde import StateDependentActorCritic

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space


class TFForward:
    def policy_params(self, agent, obs):
        return agent._numpy_forward(agent.observed(obs))[0]


class TestPPOGSDE(TFForward, OnPolicyGSDEConformance):
    algo = "ppo"
    backend = "tf"


class TestA2CGSDE(TFForward, OnPolicyGSDEConformance):
    algo = "a2c"
    backend = "tf"


def gsde_agent(algo: str, seed: int = 0):
    return make_agent(
        algo, "Pendulum-v1", backend="tf", device="cpu", seed=seed,
        hyperparams={"use_sde": True, "log_std_init": -1.0}, network={"hidden": [16, 16]},
    )  # fmt: skip


def window(agent):
    pipeline = VectorBatchPipeline(
        env_id="Pendulum-v1", n_envs=2, window_size=16, seed=0, agent=agent
    )
    try:
        return pipeline.collect()
    finally:
        pipeline.close()


def test_use_sde_needs_gsdes_network_and_gsdes_network_needs_use_sde() -> None:
    plain, sde = ActorCritic(OBS, 2, seed=0), StateDependentActorCritic(OBS, ACT, seed=0)
    for agent_cls in (TFPPOAgent, TFAgent):
        with pytest.raises(ValueError, match="use_sde=True, but the network does not output"):
            agent_cls(plain, hyperparams={"use_sde": True}, action_space=ACT, device="cpu")
        with pytest.raises(ValueError, match="use_sde=False, but the network outputs"):
            agent_cls(sde, hyperparams={"use_sde": False}, action_space=ACT, device="cpu")


def test_the_network_is_sb3s_with_or_without_its_orthogonal_initialisation() -> None:
    """SB3's orthogonal initialisation, or PyTorch's default (±1/√fan_in) as optix-torch's."""
    ortho = StateDependentActorCritic(OBS, ACT, log_std_init=-3.29, seed=0)
    plain = StateDependentActorCritic(OBS, ACT, log_std_init=-3.29, ortho_init=False, seed=0)
    assert np.all(ortho.log_std.numpy() == np.float32(-3.29)) and ortho.log_std.shape == (64, 1)
    w = ortho.latent.layers[0].kernel.numpy()
    np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(3), atol=1e-5)  # gain √2
    assert np.linalg.norm(ortho.mean.kernel.numpy()) < 0.011  # gain 0.01 (a 64x1 column)
    assert np.all(ortho.latent.layers[0].bias.numpy() == 0)
    first, mean = plain.latent.layers[0], plain.mean
    assert np.all(first.bias.numpy() != 0) and np.abs(first.kernel.numpy()).max() < 3**-0.5
    assert np.abs(mean.kernel.numpy()).max() < 1 / 8 and np.abs(mean.bias.numpy()).max() < 1 / 8
    params, value = plain(tf.zeros((5, 3)))
    assert params.shape == (5, 1 + 1 + 64) and value.shape == (5,)


def test_the_exploration_std_learns_log_sigma_not_the_features() -> None:
    """log σ̃ depends on log σ; the features z enter it (and the output) behind a
    stop_gradient, as SB3's ``learn_features=False``."""
    network = StateDependentActorCritic(OBS, ACT, hidden=(16, 16), seed=0)
    with tf.GradientTape(persistent=True) as tape:
        params, _ = network(tf.random.normal((4, 3), seed=0))
        log_std, latent = tf.reduce_sum(params[:, 1:2]), tf.reduce_sum(params[:, 2:])
    features = network.latent.trainable_variables
    for output in (log_std, latent):
        assert all(g is None or not np.any(g) for g in tape.gradient(output, features))
    assert np.all(tape.gradient(log_std, network.log_std).numpy() != 0)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_learning_moves_log_sigma_and_checkpoints_keep_it(algo: str, tmp_path: Path) -> None:
    agent = gsde_agent(algo)
    agent.learn(window(gsde_agent(algo, seed=1)))
    assert np.all(agent.sde_log_std() != np.float32(-1.0))
    agent.save_weights(str(tmp_path / "ckpt"))
    resumed = gsde_agent(algo, seed=7)
    resumed.load_weights(str(tmp_path / "ckpt"))
    np.testing.assert_array_equal(resumed.sde_log_std(), agent.sde_log_std())
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        resumed._numpy_forward(obs)[0], agent._numpy_forward(obs)[0]
    )  # log σ̃ read from the loaded log σ


def test_the_plain_network_takes_ortho_init_too() -> None:
    """A preset's ``ortho_init=False`` still builds when ``--hp use_sde=false`` turns
    gSDE off: SB3's option applies to every on-policy network."""
    for algo in ("ppo", "a2c"):
        ortho = make_agent(algo, "Pendulum-v1", backend="tf", seed=0)
        plain = make_agent(algo, "Pendulum-v1", backend="tf", seed=0, network={"ortho_init": False})
        assert np.all(ortho.actor.actor_head.layers[0].bias.numpy() == 0)
        bias = plain.actor.actor_head.layers[0].bias.numpy()
        assert not np.all(bias == 0) and np.all(np.abs(bias) <= 1 / math.sqrt(3))
    agent = make_agent("ppo", "Pendulum-v1", backend="tf", network={"hidden": [8]})
    assert agent.actor.actor_head.layers[0].kernel.shape == (3, 8)
