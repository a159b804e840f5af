"""Windows collected on JAX environments by one compiled program.

When the environment is written in JAX (gymnax), acting and stepping a batch
of environments for a whole window is a single ``jax.lax.scan`` that XLA
compiles once; Python runs only between windows, to hand the loop the window
and a few numbers about the episodes that ended in it. The loop's contract
(windows of ``EpisodeData``, scores, checkpoints) is unchanged.

The agent takes part through a small protocol, :class:`CompiledPolicy`.
"""

from __future__ import annotations

import base64
import functools
import logging
import random
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from optix_core.agent import BaseAgent
from optix_core.pipeline.base import EnvPipeline
from optix_core.types import EpisodeData
from optix_jax.envs.gymnax import PREFIX, end_flags, load, to_gymnasium_space

log = logging.getLogger(__name__)

# policy(params, obs [N, ...], key) -> (env_actions [N, ...], info {name: [N, ...]})
PolicyFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@runtime_checkable
class CompiledPolicy(Protocol):
    """What an agent offers to be driven by :class:`CompiledPipeline`.

    ``compiled_policy()`` returns ``(policy, params)``. ``policy(params, obs,
    key)`` is pure and jittable: ``obs`` is a ``[N, ...]`` jax array, ``key`` one
    ``jax.random`` key for the whole batch (the pipeline owns the stream), and
    it returns ``(env_actions, info)``: actions ``[N, ...]`` in the
    environment's format (int32 for Discrete, float32 for Box; the pipeline
    clips Box actions to the bounds for the environment and records them
    unclipped), and a dict of ``[N, ...]`` arrays that becomes the window's
    ``policy_info`` (PPO records "log_probs", "values" and, for Box,
    "raw_actions").

    The pipeline calls ``compiled_policy()`` again before every window, since
    ``params`` change with every ``learn``. ``policy`` must be the same Python
    object on every call: it is a static argument of the compiled window, so a
    new function object would compile the window again.
    """

    def compiled_policy(self) -> tuple[PolicyFn, Any]: ...


class _Carry(NamedTuple):
    """What one step hands the next: environment states and each episode so far."""

    state: Any
    obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


class _Step(NamedTuple):
    """What one step records, stacked to ``[T, N, ...]`` by the scan."""

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_observations: jax.Array
    policy_info: dict[str, jax.Array]
    episode_return: jax.Array  # the running return after the step, before any reset
    episode_length: jax.Array


class CompiledPipeline(EnvPipeline):
    """Windows of ``window_size`` steps from ``n_envs`` gymnax environments, each
    collected by one jitted ``jax.lax.scan`` with the agent's pure policy.

    ``env_id`` is a ``gymnax:Name`` id. The window's arrays stay on the device
    as jax arrays, shaped like every window's: ``observations``, ``actions``,
    ``rewards``, ``terminated``, ``truncated`` and ``final_observations``
    ``[T, N, ...]``, ``next_observations`` ``[N, ...]``, ``policy_info`` of
    ``[T, N, ...]`` arrays (none when the pipeline only acts: bound with
    ``acting_only=True``). ``infos`` is numpy, as from every pipeline: the
    returns, lengths and start steps of the episodes that ended in the window,
    and ``recent_returns`` across windows.

    Episodes end as in gymnasium (:func:`optix_jax.envs.gymnax.end_flags`);
    the pipeline resets ended environments itself, after recording their last
    observation. ``state_dict`` holds its ``jax.random`` key and the
    environments' states with the episodes under way (compressed), so a
    resumed run goes on in the same episodes with the same stream, as never
    stopped (``continue_episodes``).
    """

    def __init__(
        self,
        env_id: str,
        n_envs: int,
        window_size: int,
        seed: int | None = None,
        agent: BaseAgent | None = None,
        *,
        stats_window: int = 20,
    ) -> None:
        name = _gymnax_name(env_id)
        for label, value in (("n_envs", n_envs), ("window_size", window_size)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.env, self.env_params = load(name)
        self.env_id = env_id
        self.n_envs = n_envs
        self.window_size = window_size
        self.window_steps = n_envs * window_size
        self.observation_space = to_gymnasium_space(self.env.observation_space(self.env_params))
        self.action_space = to_gymnasium_space(self.env.action_space(self.env_params))
        super().__init__(n_envs, stats_window)
        self.seed = random.SystemRandom().randrange(2**31) if seed is None else seed
        self._key = jax.random.key(self.seed)
        self._carry: _Carry | None = None
        self._interrupted: list[dict[str, Any]] | None = None  # a loaded state's episodes
        self._reset_all, self._collect = _programs(name, n_envs, window_size)
        if agent is not None:
            self.bind(agent)

    def bind(self, agent: BaseAgent, *, acting_only: bool = False) -> None:
        if not isinstance(agent, CompiledPolicy):
            raise ValueError(
                f"CompiledPipeline acts through a pure policy, and {type(agent).__name__} "
                "offers none: use an agent of the jax backend that offers compiled_policy(), "
                "or train this agent on gymnasium environments (VectorBatchPipeline)"
            )
        agent.compiled_policy()  # one built in a way this pipeline cannot drive says so now
        super().bind(agent, acting_only=acting_only)

    def collect(self) -> EpisodeData:
        """Run one window on the device and return it."""
        agent = self._require_agent()
        policy, params = agent.compiled_policy()
        if self._carry is None:
            # Fresh episodes, keyed apart from the window stream (which a reset must
            # not advance, so a resumed run's windows draw the keys they would have).
            self._carry = self._reset_all(
                jax.random.fold_in(self._key, self._windows), self.env_params
            )
        steps_before = self._steps
        self._carry, self._key, steps = self._collect(
            policy, params, self.env_params, self._carry, self._key
        )
        self._steps += self.window_size * self.n_envs
        self._windows += 1
        self._record_episodes(steps, steps_before)
        return EpisodeData(
            observations=steps.observations,
            actions=steps.actions,
            rewards=steps.rewards,
            terminated=steps.terminated,
            truncated=steps.truncated,
            infos=self.stats.window_infos(),
            episode_id=self._windows,
            next_observations=self._carry.obs,
            final_observations=steps.final_observations,
            policy_info={} if self.acting_only else steps.policy_info,
        )

    def _record_episodes(self, steps: _Step, steps_before: int) -> None:
        """Hand the episodes that ended in the window to the statistics, in the
        order they ended (by step, then column), as a Python pipeline would."""
        terminated, truncated, returns, lengths = jax.device_get(
            (steps.terminated, steps.truncated, steps.episode_return, steps.episode_length)
        )
        ended = np.logical_or(terminated, truncated)
        t, _ = np.nonzero(ended)
        lengths = lengths[ended].astype(np.int64)
        # The env step count when each began: its first step was window step t - length + 1.
        starts = steps_before + (t - lengths + 1) * self.n_envs
        self.stats.add_ended(returns[ended], lengths, starts)

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "key": jax.random.key_data(self._key).tolist()}
        if self._carry is not None:
            leaves = jax.device_get(jax.tree_util.tree_leaves(self._carry))
            state["episodes"] = [_packed(np.asarray(leaf)) for leaf in leaves]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "key" in state:
            self._key = jax.random.wrap_key_data(jnp.asarray(state["key"], dtype=jnp.uint32))
        self._carry = None  # new episodes, unless continue_episodes() restores the old ones
        self._interrupted = state.get("episodes")

    def continue_episodes(self) -> bool:
        """Put back the environments' states and the episodes under way that the
        loaded state saved; False, with new episodes to come, where it saved none
        or they do not fit this pipeline's environments."""
        saved, self._interrupted = self._interrupted, None
        if saved is None:
            return False
        template = jax.eval_shape(self._reset_all, self._key, self.env_params)
        leaves, structure = jax.tree_util.tree_flatten(template)
        restored = [_unpacked(leaf) for leaf in saved]
        if len(restored) != len(leaves) or any(
            r.shape != leaf.shape or r.dtype != leaf.dtype
            for r, leaf in zip(restored, leaves, strict=False)
        ):
            log.warning(
                "the checkpoint's environment states do not fit %s with %d environments: "
                "the resumed run starts new episodes",
                self.env_id,
                self.n_envs,
            )
            return False
        self._carry = jax.tree_util.tree_unflatten(structure, [jnp.asarray(r) for r in restored])
        return True

    def restart_episodes(self) -> None:
        self._carry = None


def _packed(array: np.ndarray) -> dict[str, Any]:
    """One array as JSON: its bytes compressed, in base64 (the reset states of
    2,048 MinAtar Asterix environments: 5 MB as a JSON list, 32 kB so)."""
    data = base64.b64encode(zlib.compress(np.ascontiguousarray(array).tobytes(), 1))
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": data.decode()}


def _unpacked(packed: dict[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(packed["data"]))
    return np.frombuffer(raw, dtype=np.dtype(packed["dtype"])).reshape(packed["shape"])


def make_pipeline(env_id: str, n_envs: int, window_size: int, seed: int | None) -> CompiledPipeline:
    """The gymnax family's pipeline factory (``EnvironmentSpec.pipeline``), as
    ``optix train`` calls it."""
    return CompiledPipeline(env_id, n_envs, window_size, seed)


def _gymnax_name(env_id: str) -> str:
    prefix, sep, name = env_id.partition(":")
    if not sep or prefix != PREFIX:
        raise ValueError(
            f"CompiledPipeline runs environments written in JAX, ids such as "
            f"'{PREFIX}:CartPole-v1'; {env_id!r} is not one (a gymnasium environment is "
            "collected with VectorBatchPipeline)"
        )
    return name


@functools.lru_cache(maxsize=16)
def _programs(name: str, n_envs: int, window_size: int) -> tuple[Callable, Callable]:
    """The jitted reset and window for one environment and size, shared by every
    pipeline that asks for them: trials and resumed runs build pipelines anew, and
    each would otherwise compile its own."""
    env, params = load(name)
    observation_space = to_gymnasium_space(env.observation_space(params))
    action_space = to_gymnasium_space(env.action_space(params))
    return (
        _reset_fn(env, n_envs, observation_space.dtype),
        _window_fn(env, n_envs, window_size, observation_space, action_space),
    )


def _reset_fn(env: Any, n_envs: int, obs_dtype: Any) -> Callable[[jax.Array, Any], _Carry]:
    """A jitted reset of all ``n_envs`` environments from one key."""

    def reset(key: jax.Array, params: Any) -> _Carry:
        obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(
            jax.random.split(key, n_envs), params
        )
        return _Carry(
            state=state,
            obs=obs.astype(obs_dtype),
            episode_return=jnp.zeros(n_envs, jnp.float32),
            episode_length=jnp.zeros(n_envs, jnp.int32),
        )

    return jax.jit(reset)


def _window_fn(
    env: Any, n_envs: int, length: int, observation_space: gym.Space, action_space: gym.Space
) -> Callable[..., tuple[_Carry, jax.Array, _Step]]:
    """The jitted window: ``collect(policy, policy_params, env_params, carry, key)``
    scans ``length`` steps of every environment and returns the carry after the
    window, the key stream advanced past it, and the stacked steps."""
    obs_dtype = observation_space.dtype
    bounds = (
        (jnp.asarray(action_space.low), jnp.asarray(action_space.high))
        if isinstance(action_space, gym.spaces.Box)
        else None
    )
    step_envs = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))
    reset_envs = jax.vmap(env.reset_env, in_axes=(0, None))

    def collect(
        policy: PolicyFn, policy_params: Any, env_params: Any, carry: _Carry, key: jax.Array
    ) -> tuple[_Carry, jax.Array, _Step]:
        def step(
            inner: tuple[_Carry, jax.Array], _: None
        ) -> tuple[tuple[_Carry, jax.Array], _Step]:
            carry, key = inner
            key, act_key, step_key, reset_key = jax.random.split(key, 4)
            actions, info = policy(policy_params, carry.obs, act_key)
            env_actions = actions if bounds is None else jnp.clip(actions, *bounds)
            obs, state, reward, done, _ = step_envs(
                jax.random.split(step_key, n_envs), carry.state, env_actions, env_params
            )
            obs = obs.astype(obs_dtype)
            terminated, truncated = end_flags(state, done, env_params)
            episode_return = carry.episode_return + reward.astype(jnp.float32)
            episode_length = carry.episode_length + 1
            reset_obs, reset_state = reset_envs(jax.random.split(reset_key, n_envs), env_params)
            record = _Step(
                observations=carry.obs,
                actions=actions,
                rewards=reward.astype(jnp.float32),
                terminated=terminated,
                truncated=truncated,
                final_observations=_where(done, obs, jnp.zeros_like(obs)),
                policy_info=info,
                episode_return=episode_return,
                episode_length=episode_length,
            )
            after = _Carry(
                state=_where(done, reset_state, state),
                obs=_where(done, reset_obs.astype(obs_dtype), obs),
                episode_return=jnp.where(done, 0.0, episode_return),
                episode_length=jnp.where(done, 0, episode_length),
            )
            return (after, key), record

        (carry, key), steps = jax.lax.scan(step, (carry, key), length=length)
        return carry, key, steps

    return jax.jit(collect, static_argnums=0)


def _where(done: jax.Array, on_done: Any, otherwise: Any) -> Any:
    """``jnp.where`` over two pytrees of ``[N, ...]`` leaves, by a ``[N]`` mask."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        mask = done.reshape(done.shape + (1,) * (jnp.ndim(b) - 1))
        return jnp.where(mask, a, b)

    return jax.tree.map(pick, on_done, otherwise)
