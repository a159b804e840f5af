"""The policy layer: PPO's and A2C's whole contract on every observation
space (images, Dict, Discrete, flat) and every action space (Discrete,
MultiDiscrete, MultiBinary, Box), the same environments as every backend's."""

from optix_core.testing import AgentConformance
from optix_core.testing.toy_envs import SPACE_ENVS


class TestPPOOnEverySpace(AgentConformance):
    algo = "ppo"
    backend = "jax"
    env_ids = SPACE_ENVS


class TestA2COnEverySpace(AgentConformance):
    algo = "a2c"
    backend = "jax"
    env_ids = SPACE_ENVS
