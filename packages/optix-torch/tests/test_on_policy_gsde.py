"""On-policy gSDE (``use_sde``) in optix-torch: PPO's and A2C's network, acting and export."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from optix_core.registry import make_agent
from optix_core.testing.on_policy_gsde import OnPolicyGSDEConformance
from optix_torch.algorithms.a2c import TorchAgent
from optix_torch.algorithms.ppo import TorchPPOAgent
from optix_torch.policies.networks import ActorCritic
from optix_torch.policies.sde import StateDependentActorCritic

torch.set_num_threads(1)
PENDULUM = gym.make("Pendulum-v1")


class TorchForward:
    def policy_params(self, agent, obs):
        return agent._numpy_forward(agent.observed(obs), values=False)[0]


class TestPPOGSDE(TorchForward, OnPolicyGSDEConformance):
    algo = "ppo"
    backend = "torch"


class TestA2CGSDE(TorchForward, OnPolicyGSDEConformance):
    algo = "a2c"
    backend = "torch"


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_updates_log_probability_and_entropy_are_those_acting_recorded(algo) -> None:
    """What the update differentiates (the torch ``log_prob`` and ``entropy``) is
    the diagonal Gaussian of ``[μ ‖ log σ̃]``, unclamped, whose density acting recorded."""
    agent = make_agent(
        algo, "Pendulum-v1", device="cpu", seed=0,
        hyperparams={"use_sde": True, "log_std_init": -1.0},
    )  # fmt: skip
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    _, info = agent.act_info(obs, np.zeros(4, dtype=bool))
    params = torch.as_tensor(agent._numpy_forward(obs, values=False)[0])
    log_prob = agent.distribution.log_prob(params, torch.as_tensor(info["raw_actions"]))
    np.testing.assert_allclose(log_prob.numpy(), info["log_probs"], rtol=1e-5, atol=1e-5)
    entropy = params[:, 1] + 0.5 + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(agent.distribution.entropy(params), entropy)


@pytest.mark.parametrize("agent_cls", [TorchPPOAgent, TorchAgent])
def test_use_sde_needs_gsdes_network_and_gsdes_network_needs_use_sde(agent_cls) -> None:
    plain = ActorCritic(PENDULUM.observation_space, 2)
    with pytest.raises(ValueError, match="use_sde=True, but the network does not output"):
        agent_cls(plain, hyperparams={"use_sde": True}, action_space=PENDULUM.action_space)
    sde = StateDependentActorCritic(PENDULUM.observation_space, PENDULUM.action_space)
    with pytest.raises(ValueError, match="use_sde=False, but the network outputs"):
        agent_cls(sde, hyperparams={"use_sde": False}, action_space=PENDULUM.action_space)


def test_the_network_is_sb3s_with_or_without_its_orthogonal_initialisation() -> None:
    def network(ortho_init: bool) -> StateDependentActorCritic:
        torch.manual_seed(0)
        return StateDependentActorCritic(
            PENDULUM.observation_space, PENDULUM.action_space, log_std_init=-3.29,
            ortho_init=ortho_init,
        )  # fmt: skip

    ortho, plain = network(True), network(False)
    assert torch.all(ortho.log_std == -3.29) and ortho.log_std.shape == (64, 1)
    w = ortho.latent[0].weight
    torch.testing.assert_close(w.T @ w, 2.0 * torch.eye(3), atol=1e-5, rtol=0)  # gain √2
    assert ortho.mean.weight.norm() < 0.011  # gain 0.01 (a 1x64 orthogonal row)
    assert torch.all(ortho.latent[0].bias == 0) and not torch.all(plain.latent[0].bias == 0)
    params, value = plain(torch.zeros(5, 3))
    assert params.shape == (5, 1 + 1 + 64) and value.shape == (5,)


def test_the_exported_policy_acts_on_the_mean() -> None:
    agent = make_agent("ppo", "Pendulum-v1", device="cpu", seed=0, hyperparams={"use_sde": True})
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    exported = agent.policy_module()(torch.as_tensor(obs)).detach().numpy()
    np.testing.assert_allclose(exported, agent.act(obs, deterministic=True), rtol=1e-6)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_plain_network_takes_ortho_init_too(algo) -> None:
    """A preset's ``ortho_init=False`` still builds when ``--hp use_sde=false`` turns
    gSDE off: SB3's option applies to every on-policy network."""
    ortho = make_agent(algo, "Pendulum-v1", device="cpu", seed=0).actor.heads
    plain = make_agent(
        algo, "Pendulum-v1", device="cpu", seed=0, network={"ortho_init": False}
    ).actor.heads
    assert torch.all(ortho.biases[0] == 0)
    bias = plain.biases[0]
    assert not torch.all(bias == 0) and torch.all(bias.abs() <= 1 / math.sqrt(3))
    assert torch.all(plain.weights[-1][1, :, 1:] == 0)  # the critic reads column 0 alone
