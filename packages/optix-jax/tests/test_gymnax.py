"""gymnax environments as gymnasium ones, reached through optix-core's registry by
``gymnax:Name`` ids (real gymnax, real jax)."""

from __future__ import annotations

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from optix_core import environments, evaluate_policy, make_agent
from optix_core.registry import RegistryError, make_env, provider
from optix_jax.envs.gymnax import GymnaxEnv, end_flags, load


def push_the_poles_way(obs: np.ndarray) -> int:
    """Push the cart toward where the pole leans and turns: keeps CartPole up for 500 steps."""
    return int(obs[2] + obs[3] > 0)


def play(env: gym.Env, policy, seed: int) -> tuple[int, bool, bool]:
    """One episode: its length and how it ended."""
    obs, _ = env.reset(seed=seed)
    for length in range(1, 10_000):
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        if terminated or truncated:
            return length, terminated, truncated
    raise AssertionError("the episode never ended")


def test_optix_jax_registers_the_gymnax_family():
    (family,) = [s for s in environments() if s.prefix == "gymnax"]
    assert provider(family) == "optix-jax"
    assert family.extra == "optix-jax[gymnax]"
    assert family.pipeline == "optix_jax.pipelines.compiled:make_pipeline"


@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")  # Pendulum's [-2, 2]
@pytest.mark.parametrize("name", ["CartPole-v1", "Pendulum-v1"])
def test_a_gymnax_id_makes_a_gymnasium_env_that_passes_gymnasiums_checker(name):
    env = make_env(f"gymnax:{name}")
    assert isinstance(env, GymnaxEnv)
    check_env(env, skip_render_check=True)


def test_spaces_are_converted_with_bounds_and_dtypes():
    cartpole = make_env("gymnax:CartPole-v1")
    assert cartpole.action_space == gym.spaces.Discrete(2)
    assert cartpole.observation_space.shape == (4,)
    assert cartpole.observation_space.dtype == np.float32
    assert cartpole.observation_space.high[0] == pytest.approx(4.8)
    pendulum = make_env("gymnax:Pendulum-v1")
    assert pendulum.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    np.testing.assert_allclose(pendulum.observation_space.high, [1.0, 1.0, 8.0])
    # gymnax declares Catch's observations int64; without x64 jax holds them as int32.
    catch = make_env("gymnax:Catch-bsuite")
    assert catch.observation_space.dtype == np.int32
    obs, _ = catch.reset(seed=0)
    assert obs.dtype == np.int32 and obs in catch.observation_space


def test_an_unknown_gymnax_name_is_one_line_listing_gymnaxs_environments():
    with pytest.raises(RegistryError) as excinfo:
        make_env("gymnax:CartPole-v9")
    message = str(excinfo.value)
    assert message.startswith(
        "unknown environment 'gymnax:CartPole-v9': gymnax has no environment 'CartPole-v9'; "
        "it has: CartPole-v1, Pendulum-v1,"
    )
    assert "\n" not in message


def test_reset_seeds_the_jax_stream():
    env = make_env("gymnax:CartPole-v1")
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_falling_pole_terminates_and_the_time_limit_truncates():
    cartpole = make_env("gymnax:CartPole-v1")
    for seed in range(3):
        length, terminated, truncated = play(cartpole, lambda obs: 1, seed)
        assert (terminated, truncated) == (True, False) and length < 100
        assert play(cartpole, push_the_poles_way, seed) == (500, False, True)
    pendulum = make_env("gymnax:Pendulum-v1")
    assert play(pendulum, lambda obs: np.array([0.5], np.float32), 0) == (200, False, True)


def test_end_flags_split_done_by_the_time_limit():
    _, params = load("CartPole-v1")

    class State:
        time = jnp.array([499, 500, 500, 12])

    done = jnp.array([False, True, False, True])
    terminated, truncated = end_flags(State, done, params)
    np.testing.assert_array_equal(terminated, [False, False, False, True])
    np.testing.assert_array_equal(truncated, [False, True, False, False])


def test_step_before_reset_is_refused():
    with pytest.raises(gym.error.ResetNeeded):
        GymnaxEnv("CartPole-v1").step(0)


def test_optix_evaluates_any_agent_on_a_gymnax_id():
    agent = make_agent("cem", "gymnax:CartPole-v1", seed=0)
    result = evaluate_policy(agent, "gymnax:CartPole-v1", episodes=4, n_envs=2, seed=0)
    assert len(result.returns) == 4
    assert ((result.returns >= 8) & (result.returns <= 500)).all()
    np.testing.assert_array_equal(result.returns, result.lengths)  # CartPole pays 1 a step
