"""Evaluation episodes on gymnax environments played by one compiled program
(``optix_jax.pipelines.evaluation``, the gymnax family's ``evaluate``), against
the same episodes stepped from Python through ``GymnaxEnv``."""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
import pytest

from optix_core.evaluation import evaluate_policy
from optix_core.registry import environment_family, make_agent, make_env
from optix_jax.pipelines import CompiledPipeline
from optix_jax.pipelines import evaluation as compiled_evaluation
from optix_jax.pipelines.evaluation import evaluate

CARTPOLE = "gymnax:CartPole-v1"
PENDULUM = "gymnax:Pendulum-v1"


def ppo(env_id: str = CARTPOLE, seed: int = 0):
    return make_agent("ppo", env_id, backend="jax", seed=seed)


def python_episodes(agent, env_id: str, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode ``i``: the wrapper reset with ``seed + i`` and played to its end from
    Python, deterministically, actions clipped as ``evaluate_policy`` clips them."""
    env = make_env(env_id)
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, steps, done = 0.0, 0, False
        while not done:
            action = np.asarray(agent.act(obs[None], deterministic=True))[0]
            if isinstance(env.action_space, gym.spaces.Box):
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    env.close()
    return np.asarray(returns), np.asarray(lengths)


def stepped_from_python(agent, env_id: str, **kwargs):
    """``evaluate_policy`` on the same environments, given as a callable so that the
    family's evaluate is not asked."""
    return evaluate_policy(agent, lambda: make_env(env_id), **kwargs)


def pairs(result) -> list[tuple[float, int]]:
    return sorted(zip(result.returns.tolist(), result.lengths.tolist(), strict=True))


def test_the_gymnax_family_offers_the_compiled_evaluation():
    family = environment_family(CARTPOLE)
    assert family.evaluate == "optix_jax.pipelines.evaluation:evaluate"


def test_up_to_eight_episodes_are_exactly_pythons_episodes():
    agent = ppo()
    compiled = evaluate_policy(agent, CARTPOLE, episodes=8, seed=3)
    python = stepped_from_python(agent, CARTPOLE, episodes=8, seed=3)
    # The same episodes; Python lists them in the order they ended.
    assert pairs(compiled) == pairs(python)
    assert compiled.returns.dtype == np.float64 and compiled.lengths.dtype == np.int64


def test_episode_i_is_the_wrappers_episode_reset_with_seed_plus_i():
    agent = ppo(seed=1)
    compiled = evaluate_policy(agent, CARTPOLE, episodes=20, seed=11)
    returns, lengths = python_episodes(agent, CARTPOLE, 20, seed=11)
    np.testing.assert_array_equal(compiled.returns, returns)
    np.testing.assert_array_equal(compiled.lengths, lengths)
    assert len(set(lengths.tolist())) > 1  # the seeds really start different episodes


def test_both_routes_agree_on_the_mean_of_a_fixed_policy():
    agent = ppo(seed=2)
    compiled = evaluate_policy(agent, CARTPOLE, episodes=100, seed=0)
    python = stepped_from_python(agent, CARTPOLE, episodes=100, seed=0)
    assert len(compiled.returns) == len(python.returns) == 100
    sem = np.sqrt((compiled.std**2 + python.std**2) / 100)
    assert abs(compiled.mean - python.mean) <= 4 * sem + 1e-9


def test_an_agent_without_a_compiled_policy_is_stepped_from_python():
    agent = make_agent("cem", CARTPOLE, seed=0)
    assert not hasattr(agent, "compiled_policy")
    assert evaluate(agent, CARTPOLE, 4, 0, True) is None
    result = evaluate_policy(agent, CARTPOLE, episodes=4, seed=0)
    assert pairs(result) == pairs(stepped_from_python(agent, CARTPOLE, episodes=4, seed=0))


def test_ids_the_evaluator_does_not_know_are_left_to_python():
    agent = ppo()
    assert evaluate(agent, "gymnax:NoSuchEnv-v0", 2, 0, True) is None
    assert evaluate(agent, "CartPole-v1", 2, 0, True) is None


def test_a_second_evaluation_after_learning_does_not_compile_again():
    agent = ppo(seed=4)
    evaluate_policy(agent, CARTPOLE, episodes=6, seed=0)
    program = compiled_evaluation._program("CartPole-v1", 6, True)
    compiled = program._cache_size()
    policy, state = agent.compiled_policy(deterministic=True)
    before = [np.array(leaf) for leaf in jax.tree.leaves(state)]

    pipeline = CompiledPipeline(CARTPOLE, n_envs=8, window_size=64, seed=0, agent=agent)
    agent.learn(pipeline.collect())
    again, after = agent.compiled_policy(deterministic=True)
    assert again is policy
    after = [np.asarray(leaf) for leaf in jax.tree.leaves(after)]
    assert any((a != b).any() for a, b in zip(before, after, strict=True))

    result = evaluate_policy(agent, CARTPOLE, episodes=6, seed=0)
    assert program._cache_size() == compiled
    returns, lengths = python_episodes(agent, CARTPOLE, 6, seed=0)  # the new weights played
    np.testing.assert_array_equal(result.returns, returns)
    np.testing.assert_array_equal(result.lengths, lengths)


def test_box_actions_on_pendulum():
    agent = ppo(PENDULUM, seed=0)
    compiled = evaluate_policy(agent, PENDULUM, episodes=4, seed=7)
    returns, lengths = python_episodes(agent, PENDULUM, 4, seed=7)
    np.testing.assert_array_equal(compiled.lengths, [200] * 4)
    np.testing.assert_array_equal(compiled.lengths, lengths)
    # float32 sums on the device, float64 in Python.
    np.testing.assert_allclose(compiled.returns, returns, rtol=1e-4)
    assert len(set(compiled.returns.tolist())) == 4


def test_stochastic_evaluation_draws_its_keys_from_the_seed():
    agent = ppo(seed=5)
    first = evaluate_policy(agent, CARTPOLE, episodes=16, seed=9, deterministic=False)
    again = evaluate_policy(agent, CARTPOLE, episodes=16, seed=9, deterministic=False)
    other = evaluate_policy(agent, CARTPOLE, episodes=16, seed=10, deterministic=False)
    np.testing.assert_array_equal(first.returns, again.returns)
    assert not np.array_equal(first.returns, other.returns)
    assert compiled_evaluation._program.cache_info().currsize >= 1


def test_episodes_must_be_at_least_one():
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        evaluate_policy(ppo(), CARTPOLE, episodes=0)
