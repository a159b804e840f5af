"""The policy layer: every observation and action space through PPO and A2C,
default networks chosen from the spaces, users' extractors, and learning on
pixels, MultiDiscrete actions, and Dict, MultiDiscrete and MultiBinary
observations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Categorical as TorchCategorical

from optix_core import VectorBatchPipeline, make_agent
from optix_core.evaluation import evaluate_policy
from optix_core.testing import AgentConformance
from optix_core.testing.toy_envs import SPACE_ENVS
from optix_core.types import HyperparamSet
from optix_torch.algorithms.a2c import TorchAgent
from optix_torch.algorithms.ppo import TorchPPOAgent
from optix_torch.policies import (
    ActorCritic,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    OneHotExtractor,
    SmallCNN,
    default_extractor,
    distribution_for,
)
from optix_torch.policies.distributions import Bernoulli, MultiCategorical

torch.set_num_threads(1)


class TestPPOOnEverySpace(AgentConformance):
    algo = "ppo"
    backend = "torch"
    env_ids = SPACE_ENVS


class TestA2COnEverySpace(AgentConformance):
    algo = "a2c"
    backend = "torch"
    env_ids = SPACE_ENVS


# ---- the default network from the spaces ---------------------------------------------


def test_the_default_extractor_follows_the_observation_space() -> None:
    image = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert isinstance(default_extractor(image), NatureCNN)
    assert isinstance(default_extractor(gym.spaces.Box(0, 255, (10, 10, 3), np.uint8)), SmallCNN)
    assert isinstance(default_extractor(gym.spaces.Box(-1, 1, (4,))), FlattenExtractor)
    # A float Box of rank 3 is not an image: flattened, never scaled.
    assert isinstance(default_extractor(gym.spaces.Box(0, 1, (10, 10, 3))), FlattenExtractor)
    assert isinstance(default_extractor(gym.spaces.Discrete(5)), OneHotExtractor)
    combined = default_extractor(
        gym.spaces.Dict({"image": image, "v": gym.spaces.Box(-1, 1, (2,))})
    )
    assert isinstance(combined, CombinedExtractor)
    assert isinstance(combined.extractors["image"], NatureCNN)
    with pytest.raises(ValueError, match="reads Box, Discrete, MultiDiscrete, MultiBinary or Dict"):
        default_extractor(gym.spaces.Tuple((gym.spaces.Discrete(2),)))


def test_discrete_and_multidiscrete_observations_are_one_hot_from_their_first_value() -> None:
    multi = gym.spaces.MultiDiscrete([3, 2], start=[1, -1])
    assert isinstance(default_extractor(multi), OneHotExtractor)
    assert isinstance(default_extractor(gym.spaces.MultiBinary(4)), FlattenExtractor)
    hot = default_extractor(multi)(torch.tensor([[2, 0], [1, -1]]))
    torch.testing.assert_close(hot, torch.tensor([[0.0, 1, 0, 0, 1], [1, 0, 0, 1, 0]]))
    single = default_extractor(gym.spaces.Discrete(3, start=-1))(torch.tensor([1, -1]))
    torch.testing.assert_close(single, torch.tensor([[0.0, 0, 1], [1, 0, 0]]))


def test_images_are_scaled_inside_the_network_and_travel_as_uint8() -> None:
    agent = make_agent("ppo", "optix-tests/CatchLarge-v0", device="cpu", seed=0)
    assert isinstance(agent.actor.extractor, NatureCNN)
    pipeline = VectorBatchPipeline(
        env_id="optix-tests/CatchLarge-v0", n_envs=2, window_size=8, seed=0, agent=agent
    )
    data = pipeline.collect()
    pipeline.close()
    assert data.observations.dtype == np.uint8
    obs = torch.as_tensor(data.observations[0])
    with torch.no_grad():
        scaled = agent.actor.extractor(obs.float() / 255.0)
        raw = agent.actor.extractor(obs)
    torch.testing.assert_close(raw, scaled)


def test_a_users_extractor_trains_in_ppo_and_a2c() -> None:
    """Any nn.Module from observations to features serves; its weights learn."""
    space = gym.make("optix-tests/Catch-v0").observation_space

    class Pixels(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(50, 32)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.linear(obs.flatten(1).float() / 255.0))

    for agent_cls in (TorchPPOAgent, TorchAgent):
        network = ActorCritic(space, 3, extractor=Pixels())
        agent = agent_cls(
            network, action_space=gym.spaces.Discrete(3), observation_space=space, device="cpu"
        )
        before = network.extractor.linear.weight.detach().clone()
        pipeline = VectorBatchPipeline(
            env_id="optix-tests/Catch-v0", n_envs=2, window_size=32, seed=0, agent=agent
        )
        agent.learn(pipeline.collect())
        pipeline.close()
        assert not torch.equal(network.extractor.linear.weight, before), agent_cls.__name__


def test_an_extractor_that_does_not_fit_is_refused_before_any_work() -> None:
    space = gym.spaces.Box(-1, 1, (4,))
    with pytest.raises(ValueError, match="features extractor Linear fails"):
        ActorCritic(space, 2, extractor=nn.Linear(7, 8))


# ---- distributions against torch.distributions -----------------------------------------


def test_multi_categorical_and_bernoulli_log_probabilities_are_torchs() -> None:
    gen = torch.Generator().manual_seed(0)
    multi = MultiCategorical(gym.spaces.MultiDiscrete([3, 2, 4]))
    params = torch.randn(16, 9, generator=gen)
    actions, info = multi.sample(params.numpy(), gen)
    assert actions.shape == (16, 3) and multi.from_env(actions).max(0).tolist() <= [2, 1, 3]
    blocks = params.split([3, 2, 4], dim=1)
    learn = torch.as_tensor(multi.from_env(actions), dtype=torch.float32)
    expected = sum(TorchCategorical(logits=b).log_prob(learn[:, i]) for i, b in enumerate(blocks))
    torch.testing.assert_close(multi.log_prob(params, learn), expected)
    np.testing.assert_allclose(info["log_probs"], expected.numpy(), rtol=1e-5, atol=1e-5)
    entropy = sum(TorchCategorical(logits=b).entropy() for b in blocks)
    torch.testing.assert_close(multi.entropy(params), entropy)

    bits = Bernoulli(gym.spaces.MultiBinary(5))
    params = torch.randn(16, 5, generator=gen)
    actions, info = bits.sample(params.numpy(), gen)
    assert actions.dtype == np.int8 and set(np.unique(actions)) <= {0, 1}
    learn = torch.as_tensor(bits.from_env(actions), dtype=torch.float32)
    reference = TorchBernoulli(logits=params)
    torch.testing.assert_close(bits.log_prob(params, learn), reference.log_prob(learn).sum(-1))
    np.testing.assert_allclose(
        info["log_probs"], reference.log_prob(learn).sum(-1).numpy(), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(bits.entropy(params), reference.entropy().sum(-1))


def test_start_offsets_of_discrete_and_multidiscrete_spaces_are_honoured() -> None:
    gen = torch.Generator().manual_seed(0)
    discrete = distribution_for(gym.spaces.Discrete(3, start=-1))
    actions, _ = discrete.sample(np.zeros((50, 3), np.float32), gen)
    assert set(actions.tolist()) == {-1, 0, 1}
    multi = distribution_for(gym.spaces.MultiDiscrete([2, 2], start=[5, 10]))
    assert multi.mode(np.zeros((1, 4), np.float32)).tolist() == [[5, 10]]


# ---- learning on pixels, MultiDiscrete actions and Dict observations -------------------


def train_ppo(env_id: str, steps: int, hp: dict, n_envs: int = 8, window: int = 64):
    agent = make_agent("ppo", env_id, hyperparams=HyperparamSet(hp), device="cpu", seed=0)
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=n_envs, window_size=window, seed=0, agent=agent
    )
    for _ in range(steps // (n_envs * window)):
        agent.learn(pipeline.collect())
    pipeline.close()
    return agent


def fresh_score(agent, env_id: str, episodes: int = 30) -> float:
    """Deterministic return on episodes the training never saw."""
    return evaluate_policy(agent, env_id, episodes=episodes, seed=10_000).mean


@pytest.mark.slow
def test_ppo_with_the_default_cnn_learns_catch_from_pixels() -> None:
    agent = train_ppo("optix-tests/Catch-v0", 40_960, {"learning_rate": 1e-3, "n_epochs": 4})
    assert isinstance(agent.actor.extractor, SmallCNN)
    assert fresh_score(agent, "optix-tests/Catch-v0") >= 0.8  # random play: about −0.6


@pytest.mark.slow
def test_ppo_learns_multidiscrete_actions() -> None:
    agent = train_ppo("optix-tests/MultiDiscreteMatch-v0", 20_480, {"learning_rate": 1e-3})
    assert fresh_score(agent, "optix-tests/MultiDiscreteMatch-v0") >= 7.5  # random: 2.7


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["optix-tests/IndexMatch-v0", "optix-tests/BitCopy-v0"])
def test_ppo_learns_from_multidiscrete_and_multibinary_observations(env_id: str) -> None:
    agent = train_ppo(env_id, 20_480, {"learning_rate": 1e-3})
    assert fresh_score(agent, env_id) >= 7.5  # random: 2.7 and 4


@pytest.mark.slow
def test_ppo_learns_from_dict_observations() -> None:
    agent = train_ppo("optix-tests/DictGoal-v0", 20_480, {"learning_rate": 1e-3})
    assert fresh_score(agent, "optix-tests/DictGoal-v0") >= 7.5  # random: 2.7
