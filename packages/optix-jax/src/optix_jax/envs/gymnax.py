"""gymnax environments behind gymnasium's interface, and the pieces the compiled
pipeline shares with it.

The compiled pipeline trains on a gymnax environment inside one XLA program;
everything else in optix (selection and final evaluation, ``optix eval``, the
Python pipelines) steps gymnasium environments. ``GymnaxEnv`` is the same
environment seen from there, so a policy is scored on the dynamics it learned
on. Both split gymnax's single ``done`` with :func:`end_flags`, so the two
routes agree on what ended an episode.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import gymnasium as gym
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces as gymnax_spaces
from gymnax.environments.environment import Environment, EnvParams

PREFIX = "gymnax"


def load(name: str, **kwargs: Any) -> tuple[Environment, EnvParams]:
    """gymnax's environment ``name`` and its default parameters.

    Without keyword arguments the environment object is shared: gymnax
    environments hold no state (that lives in the state pytree), and sharing
    lets every copy reuse one compiled step instead of compiling its own.
    """
    if name not in gymnax.registered_envs:
        raise ValueError(
            f"gymnax has no environment {name!r}; it has: {', '.join(gymnax.registered_envs)}"
        )
    if kwargs:
        return gymnax.make(name, **kwargs)
    return _shared(name)


@functools.cache
def _shared(name: str) -> tuple[Environment, EnvParams]:
    return gymnax.make(name)


def to_gymnasium_space(space: gymnax_spaces.Space) -> gym.Space:
    """The gymnasium space for a gymnax Discrete or Box, bounds broadcast to its shape
    and its dtype as JAX holds it (int64 is int32 without x64), which is what the
    compiled pipeline's arrays carry."""
    if isinstance(space, gymnax_spaces.Discrete):
        return gym.spaces.Discrete(int(space.n))
    if isinstance(space, gymnax_spaces.Box):
        dtype = jax.dtypes.canonicalize_dtype(space.dtype)
        shape = tuple(space.shape)
        low = np.broadcast_to(np.asarray(space.low, dtype=dtype), shape)
        high = np.broadcast_to(np.asarray(space.high, dtype=dtype), shape)
        return gym.spaces.Box(low, high, shape, dtype)
    raise ValueError(
        f"gymnax space {type(space).__name__} is not supported: optix takes Discrete and Box"
    )


def end_flags(state: Any, done: jax.Array, params: EnvParams) -> tuple[jax.Array, jax.Array]:
    """gymnax's one ``done`` as gymnasium's ``(terminated, truncated)``.

    gymnax ends an episode at ``max_steps_in_episode`` with the same flag as a
    real end; gymnasium's TimeLimit calls the first a truncation, whose value a
    learner bootstraps. An episode that ends for real on its very last allowed
    step counts as truncated here (gymnax does not tell the two apart).
    """
    truncated = jnp.logical_and(done, state.time >= params.max_steps_in_episode)
    return jnp.logical_and(done, jnp.logical_not(truncated)), truncated


class GymnaxEnv(gym.Env):
    """One gymnax environment as a ``gymnasium.Env``: numpy in, numpy out.

    ``reset(seed=s)`` starts the environment's ``jax.random`` stream from ``s``;
    ``step`` runs gymnax's ``step_env`` (no auto-reset: gymnasium's caller
    resets) compiled once per environment name.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name = name
        self.env, self.params = load(name, **kwargs)
        self.observation_space = to_gymnasium_space(self.env.observation_space(self.params))
        self.action_space = to_gymnasium_space(self.env.action_space(self.params))
        self._action_dtype = (
            np.int32
            if isinstance(self.action_space, gym.spaces.Discrete)
            else (self.action_space.dtype)
        )
        self._key: jax.Array | None = None
        self._state: Any = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = jax.random.key(
                seed if seed is not None else int(self.np_random.integers(2**31))
            )
        self._key, obs, self._state = _reset(self.env, self._key, self.params)
        return self._observation(obs), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = np.asarray(action, dtype=self._action_dtype)
        self._key, obs, self._state, reward, terminated, truncated = _step(
            self.env, self._key, self._state, action, self.params
        )
        obs, reward, terminated, truncated = jax.device_get((obs, reward, terminated, truncated))
        return self._observation(obs), float(reward), bool(terminated), bool(truncated), {}

    def _observation(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=self.observation_space.dtype)


@functools.partial(jax.jit, static_argnums=0)
def _reset(env: Environment, key: jax.Array, params: EnvParams) -> tuple[Any, ...]:
    key, reset_key = jax.random.split(key)
    obs, state = env.reset_env(reset_key, params)
    return key, obs, state


@functools.partial(jax.jit, static_argnums=0)
def _step(
    env: Environment, key: jax.Array, state: Any, action: jax.Array, params: EnvParams
) -> tuple[Any, ...]:
    key, step_key = jax.random.split(key)
    obs, state, reward, done, _ = env.step_env(step_key, state, action, params)
    terminated, truncated = end_flags(state, done, params)
    return key, obs, state, reward, terminated, truncated


def make_env(name: str, **kwargs: Any) -> GymnaxEnv:
    """The environment family's ``make``: ``gymnax:CartPole-v1`` builds ``GymnaxEnv("CartPole-v1")``."""
    return GymnaxEnv(name, **kwargs)
