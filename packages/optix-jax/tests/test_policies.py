"""The policy layer: PPO's and A2C's whole contract on every observation
space (images, Dict, Discrete, MultiDiscrete, MultiBinary, flat) and every
action space (Discrete, MultiDiscrete, MultiBinary, Box), the same
environments as every backend's; one-hot observations."""

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.testing import AgentConformance
from optix_core.testing.toy_envs import SPACE_ENVS
from optix_jax.policies.extractors import FlattenExtractor, OneHotExtractor, default_extractor


class TestPPOOnEverySpace(AgentConformance):
    algo = "ppo"
    backend = "jax"
    env_ids = SPACE_ENVS


class TestA2COnEverySpace(AgentConformance):
    algo = "a2c"
    backend = "jax"
    env_ids = SPACE_ENVS


def test_discrete_and_multidiscrete_observations_are_one_hot_from_their_first_value() -> None:
    multi = gym.spaces.MultiDiscrete([3, 2], start=[1, -1])
    assert isinstance(default_extractor(multi, nnx.Rngs(0)), OneHotExtractor)
    assert isinstance(default_extractor(gym.spaces.MultiBinary(4), nnx.Rngs(0)), FlattenExtractor)
    hot = default_extractor(multi, nnx.Rngs(0))(jnp.asarray([[2, 0], [1, -1]]))
    np.testing.assert_array_equal(np.asarray(hot), [[0, 1, 0, 0, 1], [1, 0, 0, 1, 0]])
    single = default_extractor(gym.spaces.Discrete(3, start=-1), nnx.Rngs(0))(jnp.asarray([1, -1]))
    np.testing.assert_array_equal(np.asarray(single), [[0, 0, 1], [1, 0, 0]])
