"""The policy layer: PPO's and A2C's whole contract on every observation
space (images, Dict, Discrete, MultiDiscrete, MultiBinary, flat) and every
action space (Discrete, MultiDiscrete, MultiBinary, Box), the same
environments as every backend's; one-hot observations."""

import gymnasium as gym
import numpy as np
import tensorflow as tf

from optix_core.testing import AgentConformance
from optix_core.testing.toy_envs import SPACE_ENVS
from optix_tf.policies.extractors import FlattenExtractor, OneHotExtractor, default_extractor


class TestPPOOnEverySpace(AgentConformance):
    algo = "ppo"
    backend = "tf"
    env_ids = SPACE_ENVS


class TestA2COnEverySpace(AgentConformance):
    algo = "a2c"
    backend = "tf"
    env_ids = SPACE_ENVS


def test_discrete_and_multidiscrete_observations_are_one_hot_from_their_first_value() -> None:
    multi = gym.spaces.MultiDiscrete([3, 2], start=[1, -1])
    assert isinstance(default_extractor(multi, np.random.default_rng(0)), OneHotExtractor)
    assert isinstance(
        default_extractor(gym.spaces.MultiBinary(4), np.random.default_rng(0)), FlattenExtractor
    )
    hot = default_extractor(multi, np.random.default_rng(0))(tf.constant([[2, 0], [1, -1]]))
    np.testing.assert_array_equal(np.asarray(hot), [[0, 1, 0, 0, 1], [1, 0, 0, 1, 0]])
    single = default_extractor(gym.spaces.Discrete(3, start=-1), np.random.default_rng(0))(
        tf.constant([1, -1])
    )
    np.testing.assert_array_equal(np.asarray(single), [[0, 0, 1], [1, 0, 0]])
