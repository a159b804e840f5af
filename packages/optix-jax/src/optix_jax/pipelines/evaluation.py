"""Evaluation episodes on gymnax environments, played by one compiled program.

``optix_core.evaluation.evaluate_policy`` steps environments from Python, one
call into the agent and one into the environment per step: on a gymnax
environment that is tens of thousands of round trips for a short run's
checkpoint selection. The gymnax family's ``EnvironmentSpec.evaluate`` is
:func:`evaluate` instead: every episode is played at once, one environment per
episode under ``jax.vmap``, inside a ``jax.lax.while_loop`` that runs until the
last of them has ended.

Seeding. Episode ``i`` of an evaluation seeded ``seed`` is the first episode of
``GymnaxEnv`` after ``reset(seed=seed + i)``: the same reset key and the same
stream of step keys after it (the seed is taken modulo 2**32, as
``jax.random.key`` takes it). Python's ``evaluate_policy`` seeds its vector
environment's copies ``seed + i`` too, but each copy plays several episodes in
turn, and a later episode's reset key depends on how long the earlier ones
lasted; so up to ``n_envs`` episodes (8) both routes play the very same
episodes, and beyond that the same distribution of them. Returns come back in
episode order, not in the order the episodes ended.

Stochastic evaluation (``deterministic=False``) draws the policy's keys from
``seed`` too, on a stream of their own; the Python route samples from the
agent's generator instead, so only the distributions agree.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from optix_core.agent import BaseAgent
from optix_core.evaluation import PolicyEvaluation
from optix_jax.envs.gymnax import PREFIX, end_flags, load, to_gymnasium_space
from optix_jax.pipelines.compiled import PolicyFn

# fold_in data of the policy's key stream, apart from the environments' keys.
_POLICY_STREAM = 0x706F6C
EPISODE_BLOCK = 32  # episodes one compiled evaluation plays at least


def evaluate(
    agent: BaseAgent, env_id: str, episodes: int, seed: int, deterministic: bool
) -> PolicyEvaluation | None:
    """The gymnax family's ``evaluate``: ``episodes`` whole episodes of ``env_id``
    played by ``agent``'s pure policy in one compiled program, or None when the
    agent offers no ``compiled_policy`` or ``env_id`` is not a gymnax environment
    (``evaluate_policy`` then steps it from Python, and reports a bad id there)."""
    compiled_policy = getattr(agent, "compiled_policy", None)
    if compiled_policy is None or not callable(compiled_policy):
        return None
    prefix, _, name = env_id.partition(":")
    if prefix != PREFIX:
        return None
    try:
        _, params = load(name)
    except ValueError:
        return None
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    policy, state = compiled_policy(deterministic=deterministic)
    # One program per block of EPISODE_BLOCK episodes: the loop's selection (a few
    # episodes) and its final evaluation (20) share one compile; extra episodes are dropped.
    size = -(-episodes // EPISODE_BLOCK) * EPISODE_BLOCK
    seeds = np.asarray([(seed + i) % 2**32 for i in range(size)], dtype=np.uint32)
    play = _program(name, size, deterministic)
    with _device_of(agent):
        returns, lengths = play(policy, state, params, seeds)
    returns, lengths = (a[:episodes] for a in jax.device_get((returns, lengths)))
    return PolicyEvaluation(
        np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.int64)
    )


def _device_of(agent: BaseAgent) -> contextlib.AbstractContextManager:
    """The agent's own device context (``JaxAgentBase.on_device``), else nothing."""
    on_device = getattr(agent, "on_device", None)
    return on_device() if callable(on_device) else contextlib.nullcontext()


@functools.lru_cache(maxsize=32)
def _program(name: str, episodes: int, deterministic: bool) -> Callable[..., Any]:
    """The jitted evaluation for one environment, number of episodes and mode:
    ``play(policy, policy_state, env_params, seeds [E] uint32) -> (returns [E],
    lengths [E])``. ``policy`` is a static argument, so each policy function
    compiles once and later evaluations (after ``learn``: new state, same
    function) reuse it."""
    env, params = load(name)
    observation_space = to_gymnasium_space(env.observation_space(params))
    action_space = to_gymnasium_space(env.action_space(params))
    obs_dtype = observation_space.dtype
    # What GymnaxEnv.step casts an action to.
    action_dtype = np.int32 if isinstance(action_space, gym.spaces.Discrete) else action_space.dtype
    bounds = (
        (jnp.asarray(action_space.low), jnp.asarray(action_space.high))
        if isinstance(action_space, gym.spaces.Box)
        else None
    )

    def reset_one(key: jax.Array, env_params: Any) -> tuple[jax.Array, Any, Any]:
        # GymnaxEnv.reset(seed=s): key(s), split once, reset with the second half.
        key, reset_key = jax.random.split(jax.random.key(key))
        obs, state = env.reset_env(reset_key, env_params)
        return key, obs.astype(obs_dtype), state

    def step_one(key: jax.Array, state: Any, action: jax.Array, env_params: Any) -> tuple:
        # GymnaxEnv.step: split the stream, step with the second half.
        key, step_key = jax.random.split(key)
        obs, state, reward, done, _ = env.step_env(step_key, state, action, env_params)
        terminated, truncated = end_flags(state, done, env_params)
        ended = jnp.logical_or(terminated, truncated)
        return key, obs.astype(obs_dtype), state, reward.astype(jnp.float32), ended

    reset_all = jax.vmap(reset_one, in_axes=(0, None))
    step_all = jax.vmap(step_one, in_axes=(0, 0, 0, None))

    def play(
        policy: PolicyFn, policy_state: Any, env_params: Any, seeds: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        keys, obs, state = reset_all(seeds, env_params)
        policy_key = jax.random.fold_in(jax.random.key(seeds[0]), _POLICY_STREAM)
        max_steps = env_params.max_steps_in_episode

        def running(carry: tuple) -> jax.Array:
            t, alive = carry[0], carry[5]
            return jnp.logical_and(alive.any(), t < max_steps)

        def step(carry: tuple) -> tuple:
            t, keys, obs, state, policy_key, alive, returns, lengths = carry
            if deterministic:
                act_key = policy_key
            else:
                policy_key, act_key = jax.random.split(policy_key)
            actions, _ = policy(policy_state, obs, act_key)
            if bounds is not None:
                actions = jnp.clip(actions, *bounds)
            actions = actions.astype(action_dtype)
            keys, obs, state, reward, done = step_all(keys, state, actions, env_params)
            returns = returns + jnp.where(alive, reward, 0.0)
            lengths = lengths + alive.astype(jnp.int32)
            alive = jnp.logical_and(alive, jnp.logical_not(done))
            return t + 1, keys, obs, state, policy_key, alive, returns, lengths

        carry = (
            jnp.int32(0),
            keys,
            obs,
            state,
            policy_key,
            jnp.ones(episodes, bool),
            jnp.zeros(episodes, jnp.float32),
            jnp.zeros(episodes, jnp.int32),
        )
        carry = jax.lax.while_loop(running, step, carry)
        return carry[6], carry[7]

    return jax.jit(play, static_argnums=0)
