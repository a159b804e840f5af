"""Fixed-size windows from gymnasium environments: one (BatchPipeline) or many."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import concatenate, create_empty_array

from optix_core.agent import BaseAgent
from optix_core.pipeline.base import EnvPipeline
from optix_core.pipeline.episode_replay import (
    EpisodeActions,
    ReplayableEnv,
    observation_digests,
)
from optix_core.pipeline.recorder import WindowRecorder
from optix_core.registry import make_env
from optix_core.types import EpisodeData

log = logging.getLogger(__name__)


class VectorBatchPipeline(EnvPipeline):
    """Windows of ``window_size`` steps from each of N environments stepped together.

    Give ``env_fns`` (callables that build environments), or ``env_id`` with
    ``n_envs``, or a ready ``envs`` vector environment that resets in the same
    step (``autoreset_mode=AutoresetMode.SAME_STEP``). ``async_envs=True``
    steps the environments in subprocesses, which pays off when one step
    costs more than the inter-process round trip.

    The environments it builds record how each episode began
    (``ReplayableEnv``) and the pipeline keeps the actions since
    (``EpisodeActions``), so that a resumed run continues the episodes its
    checkpoint interrupted (``continue_episodes``); a ready ``envs`` cannot,
    and a resumed run starts new episodes there.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]] | None = None,
        window_size: int = 256,
        async_envs: bool = False,
        agent: BaseAgent | None = None,
        *,
        env_id: str | None = None,
        n_envs: int | None = None,
        envs: VectorEnv | None = None,
        seed: int | None = None,
        deterministic: bool = False,
        stats_window: int = 20,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        self.envs = _build_envs(env_fns, env_id, n_envs, envs, async_envs, env_kwargs or {})
        # Environments the pipeline built are ReplayableEnvs: it keeps their episodes' actions.
        self._actions = EpisodeActions(self.envs.num_envs) if envs is None else None
        self.window_size = window_size
        self.agent = agent
        self.seed = seed
        self.deterministic = deterministic
        self.n_envs = self.envs.num_envs
        self.window_steps = self.n_envs * window_size
        super().__init__(self.n_envs, stats_window)
        self._obs: Any = None
        self._episode_start = np.ones(self.n_envs, dtype=bool)
        self._box_actions = isinstance(self.envs.single_action_space, gym.spaces.Box)
        self._interrupted: dict[str, Any] | None = None  # a checkpoint's episodes, to continue

    def collect(self) -> EpisodeData:
        """Step every environment ``window_size`` times and return the window."""
        agent = self._require_agent()
        if self._obs is None:
            self._reset()
        recorder = WindowRecorder(self.n_envs, self.window_size)
        space = self.envs.single_action_space
        for _ in range(self.window_size):
            actions, info = self.act(agent, self._obs, self._episode_start)
            actions = np.asarray(actions)
            env_actions = np.clip(actions, space.low, space.high) if self._box_actions else actions
            obs, rewards, terminated, truncated, infos = self.envs.step(env_actions)
            dones = np.logical_or(terminated, truncated)
            if self._actions is not None:
                self._actions.add(env_actions, dones)
            finals = {}
            if dones.any():
                final_obs = infos["final_obs"]
                finals = {i: final_obs[i] for i in np.flatnonzero(dones)}
            recorder.add(self._obs, actions, rewards, terminated, truncated, info, finals)
            self.stats.step(rewards, dones)
            self._obs = obs
            self._episode_start = dones
        self._steps += self.window_size * self.n_envs
        self._windows += 1
        return recorder.finish(self._obs, self.stats.window_infos(), self._windows)

    def _reset(self) -> None:
        # A resumed run starts fresh episodes, seeded apart from the ones before.
        seed = None if self.seed is None else self.seed + 7919 * self._windows
        self._obs, _ = self.envs.reset(seed=seed)
        self._episode_start = np.ones(self.n_envs, dtype=bool)
        if self._actions is not None:
            self._actions.restart()

    def close(self) -> None:
        self.envs.close()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._actions is not None and self._obs is not None:
            records = [
                {**began, "actions": actions} if began is not None and actions is not None else None
                for began, actions in zip(
                    self.envs.get_attr("episode_began"), self._actions.per_env(), strict=True
                )
            ]
            state["episodes"] = {
                "records": records,
                "observations": observation_digests(self.envs.observation_space, self._obs),
                "episode_start": self._episode_start.tolist(),
                "running": self.stats.running_state(),
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._obs = None  # new episodes, unless continue_episodes() rebuilds the old ones
        self._interrupted = state.get("episodes")

    def continue_episodes(self) -> bool:
        """Rebuild the episodes the loaded state's checkpoint interrupted: reset each
        environment as its episode began and replay its actions. False, with new
        episodes to come, where the state holds none or an environment does not
        rebuild the observation it was saved at."""
        saved, self._interrupted = self._interrupted, None
        if saved is None or any(record is None for record in saved["records"]):
            return False
        if self._actions is None:  # a given vector environment: its episodes cannot be rebuilt
            return False
        self._reset()  # the vector environment's own bookkeeping, then each episode
        space = self.envs.single_observation_space
        try:
            self.envs.set_attr("pending_replay", saved["records"])
            replayed = self.envs.call("replay_pending")
            obs = concatenate(space, replayed, create_empty_array(space, self.n_envs))
            rebuilt = observation_digests(self.envs.observation_space, obs) == saved["observations"]
        except Exception as exc:  # an environment that refuses its own generator state
            log.warning("replaying the interrupted episodes failed: %s", exc)
            rebuilt = False
        if not rebuilt:
            log.warning(
                "the environments did not rebuild the episodes the checkpoint interrupted "
                "(randomness outside env.np_random?): the resumed run starts new episodes"
            )
            self._obs = None
            return False
        self._obs = obs
        self._episode_start = np.asarray(saved["episode_start"], dtype=bool)
        self.stats.continue_running(saved["running"])
        actions = [record["actions"] for record in saved["records"]]
        self._actions.load(actions, self.envs.single_action_space.dtype)
        return True

    def restart_episodes(self) -> None:
        self._obs = None
        self.stats.restart(self._steps)


class BatchPipeline(VectorBatchPipeline):
    """Windows of ``window_size`` steps from one environment (``n_steps`` is an alias).

    Episodes run on across windows; a window is a slice of experience, not an
    episode. Arrays keep a column axis of size 1, like every other window.
    """

    def __init__(
        self,
        env: gym.Env | None = None,
        agent: BaseAgent | None = None,
        window_size: int = 2048,
        *,
        env_id: str | None = None,
        n_steps: int | None = None,
        seed: int | None = None,
        deterministic: bool = False,
        stats_window: int = 20,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if (env is None) == (env_id is None):
            raise ValueError("BatchPipeline needs exactly one of env= or env_id=")
        if env is None:
            env = make_env(env_id, **(env_kwargs or {}))
        super().__init__(
            env_fns=[lambda: env],
            window_size=n_steps if n_steps is not None else window_size,
            agent=agent,
            seed=seed,
            deterministic=deterministic,
            stats_window=stats_window,
        )


def _build_envs(
    env_fns: Sequence[Callable[[], gym.Env]] | None,
    env_id: str | None,
    n_envs: int | None,
    envs: VectorEnv | None,
    async_envs: bool,
    env_kwargs: dict[str, Any],
) -> VectorEnv:
    given = sum(x is not None for x in (env_fns, env_id, envs))
    if given != 1:
        raise ValueError("give exactly one of env_fns=, env_id= (with n_envs=) or envs=")
    if envs is not None:
        mode = envs.metadata.get("autoreset_mode")
        if mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                f"the vector environment resets in mode {mode}; optix needs "
                "autoreset_mode=AutoresetMode.SAME_STEP so that every step is a real "
                "transition (or pass env_fns= and let the pipeline build it)"
            )
        return envs
    if env_id is not None:
        make_env(env_id, **env_kwargs).close()  # fail early, with a clear error
        env_fns = [lambda: make_env(env_id, **env_kwargs)] * (n_envs or 1)
    if not env_fns:
        raise ValueError("env_fns is empty: give at least one environment factory")
    vector_cls = AsyncVectorEnv if async_envs else SyncVectorEnv
    replayable = [_Replayable(fn) for fn in env_fns]
    return vector_cls(replayable, autoreset_mode=AutoresetMode.SAME_STEP)


class _Replayable:
    """An environment factory whose environment is wrapped in a ``ReplayableEnv``
    (a class, not a closure: AsyncVectorEnv pickles it to its workers)."""

    def __init__(self, env_fn: Callable[[], gym.Env]) -> None:
        self.env_fn = env_fn

    def __call__(self) -> gym.Env:
        return ReplayableEnv(self.env_fn())
