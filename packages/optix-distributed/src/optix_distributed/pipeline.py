"""ActorLearnerPipeline: the loop's windows, collected by actors running at once.

The learner (``RLOptimizer``, or ``AsyncActorLearner.run``) asks for a window;
the pipeline publishes the agent's current weights, then takes the next
trajectory of every actor and lays them side by side, ``[T, n_actors·n_envs]``
with μ's log-probabilities in ``policy_info``: one batch, IMPALA's unit of
learning. A window holds ``rounds`` such batches one after the other in time
(``infos["trajectory_len"]`` says where they part; ``ImpalaAgent`` steps once
per batch), so that the loop evaluates and schedules at a sensible grain.
While the learner learns the actors already collect the next window, with
older weights: the policy lag V-trace corrects, recorded per batch in
``infos["policy_lag"]``. Steps are counted when the learner receives them, so
every counted step is learned from.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from optix_core.agent import BaseAgent
from optix_core.pipeline.base import EnvPipeline
from optix_core.policies import observations as O
from optix_core.registry import make_env
from optix_core.types import EpisodeData
from optix_distributed.actor import ActorSpec, Trajectory
from optix_distributed.weights import flatten

EXECUTORS = ("local", "ray")


class ActorLearnerPipeline(EnvPipeline):
    """Windows from ``n_actors`` actors, each stepping ``n_envs`` environments for
    trajectories of ``window_size`` steps.

    Args:
        env_id: a registered environment id, or give ``env_factory`` (a picklable
            callable that builds one environment) instead.
        n_envs: environments per actor.
        window_size: each trajectory's length (IMPALA's unroll length).
        seed: seeds every actor's environments and sampling (each its own).
        n_actors: actors collecting at once.
        rounds: batches (one trajectory from every actor) per window.
        executor: ``"local"`` (processes on this machine) or ``"ray"`` (Ray actors).
        address: the Ray cluster to join (``"auto"``, ``"ray://host:10001"``,
            ``"host:6379"``); None starts a local one.
        start_method: local processes' ``fork``, ``forkserver`` or ``spawn``.
        env_kwargs: arguments for every environment built from ``env_id``
            (``gymnasium.make``'s: ``max_episode_steps``, the environment's own).
    """

    def __init__(
        self,
        env_id: str | None = None,
        n_envs: int = 1,
        window_size: int = 32,
        seed: int | None = None,
        *,
        n_actors: int = 2,
        rounds: int = 1,
        executor: str = "local",
        address: str | None = None,
        start_method: str | None = None,
        env_factory: Callable[[], gym.Env] | None = None,
        env_kwargs: dict[str, Any] | None = None,
        stats_window: int = 20,
    ) -> None:
        if (env_id is None) == (env_factory is None):
            raise ValueError("ActorLearnerPipeline needs exactly one of env_id= or env_factory=")
        sizes = {
            "n_envs": n_envs,
            "window_size": window_size,
            "n_actors": n_actors,
            "rounds": rounds,
        }
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        if address is not None and executor != "ray":
            raise ValueError("address= names a Ray cluster: give it with executor='ray'")
        if env_kwargs and env_id is None:
            raise ValueError("env_kwargs= are for environments built from env_id=")
        if env_id is not None:
            env_factory = partial(make_env, env_id, **(env_kwargs or {}))
        env_factory().close()  # an environment that cannot be built fails here, before any actor
        self.env_factory = env_factory
        self.n_envs, self.window_size, self.n_actors = n_envs, window_size, n_actors
        self.rounds = rounds
        self.window_steps = rounds * n_actors * n_envs * window_size
        self.seed = 0 if seed is None else seed
        self.executor = _executor(executor, n_actors, address, start_method)
        super().__init__(n_actors * n_envs, stats_window)
        self._incarnations = [0] * n_actors
        self._started = False
        self._replaced_before = 0  # by the runs this one resumes

    def bind(self, agent: BaseAgent, *, acting_only: bool = False) -> None:
        if acting_only:
            raise ValueError(
                "ActorLearnerPipeline collects for learning; validate on a VectorBatchPipeline"
            )
        for needed in ("actor", "distribution", "shared"):
            if not hasattr(agent, needed):
                raise ValueError(
                    f"{type(agent).__name__} cannot be driven by actors: it needs an actor "
                    "network, a distribution and shared (as ImpalaAgent has)"
                )
        super().bind(agent)

    def collect(self) -> EpisodeData:
        agent = self._require_agent()
        weights = flatten(agent.actor)
        if not self._started:
            spec = ActorSpec.of(
                agent.actor,
                agent.distribution,
                agent.shared,
                self.env_factory,
                self.n_envs,
                self.window_size,
                self.seed,
            )
            version = self.executor.start(spec, weights)
            self._started = True
        else:
            version = self.executor.publish(weights)
        batches, lags = [], []
        for r in range(self.rounds):
            trajectories = [self.executor.collect(i) for i in range(self.n_actors)]
            # The learner steps once per batch: batch r is learned at version + r.
            lags.append([version + r - t.version for t in trajectories])
            batches.append(self._side_by_side(trajectories))
        window = _one_after_another(batches)
        self._steps += window.n_steps
        self._windows += 1
        window.infos.update(
            self.stats.window_infos(),
            trajectory_len=self.window_size,
            policy_lag=np.array(lags),
            actors_replaced=self._replaced_before + self.executor.replaced,
        )
        window.episode_id = self._windows
        return window

    def _side_by_side(self, trajectories: list[Trajectory]) -> EpisodeData:
        """One batch, actor by actor; episode statistics follow each column, and an
        actor that was replaced starts its columns' episodes afresh (``replaced``)."""
        replaced = np.zeros(self.n_actors * self.n_envs, dtype=bool)
        for t in trajectories:
            if t.incarnation != self._incarnations[t.actor_id]:
                self._incarnations[t.actor_id] = t.incarnation
                columns = slice(t.actor_id * self.n_envs, (t.actor_id + 1) * self.n_envs)
                replaced[columns] = True
                for column in range(columns.start, columns.stop):
                    self.stats.cut(column)
        parts = [t.data for t in trajectories]

        def side_by_side(get: Callable[[EpisodeData], Any]) -> Any:
            return _concat([get(p) for p in parts], axis=1)

        window = EpisodeData(
            observations=side_by_side(lambda p: p.observations),
            actions=side_by_side(lambda p: p.actions),
            rewards=side_by_side(lambda p: p.rewards),
            terminated=side_by_side(lambda p: p.terminated),
            truncated=side_by_side(lambda p: p.truncated),
            next_observations=_concat([p.next_observations for p in parts], axis=0),
            final_observations=side_by_side(lambda p: p.final_observations),
            policy_info={
                k: side_by_side(lambda p, k=k: p.policy_info[k]) for k in parts[0].policy_info
            },
        )
        for rewards, dones in zip(window.rewards, window.dones, strict=True):
            self.stats.step(rewards, dones)
        window.infos["replaced"] = replaced
        return window

    def close(self) -> None:
        self.executor.close()
        self._started = False
        self._incarnations = [0] * self.n_actors  # a restarted executor counts afresh

    def summary(self) -> dict[str, Any]:
        where = self.executor.name
        if where == "local":
            where += f" processes ({self.executor.start_method})"
        return {
            "actors": f"{self.n_actors} × {self.n_envs} envs, {where}",
            "actors_replaced": self._replaced_before + self.executor.replaced,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "actors_replaced": self.summary()["actors_replaced"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._replaced_before = int(state.get("actors_replaced", 0)) - self.executor.replaced


def _one_after_another(batches: list[EpisodeData]) -> EpisodeData:
    """Batches joined in time. Where an actor was replaced between two batches its
    columns do not continue: the earlier batch's last step becomes a truncation,
    bootstrapped from where the dead actor's trajectory stopped."""
    for before, after in itertools.pairwise(batches):
        cut = after.infos["replaced"]
        if cut.any():
            before.truncated[-1, cut] = True
            _set_rows(before.final_observations, -1, cut, O.select(before.next_observations, cut))
    for batch in batches:
        del batch.infos["replaced"]
    if len(batches) == 1:
        return batches[0]

    def in_time(get: Callable[[EpisodeData], Any]) -> Any:
        return _concat([get(b) for b in batches], axis=0)

    return EpisodeData(
        observations=in_time(lambda b: b.observations),
        actions=in_time(lambda b: b.actions),
        rewards=in_time(lambda b: b.rewards),
        terminated=in_time(lambda b: b.terminated),
        truncated=in_time(lambda b: b.truncated),
        next_observations=batches[-1].next_observations,
        final_observations=in_time(lambda b: b.final_observations),
        policy_info={k: in_time(lambda b, k=k: b.policy_info[k]) for k in batches[0].policy_info},
    )


def _set_rows(obs: Any, row: int, mask: np.ndarray, values: Any) -> None:
    if isinstance(obs, dict):
        for k in obs:
            _set_rows(obs[k], row, mask, values[k])
        return
    obs[row, mask] = values


def _concat(arrays: list[Any], axis: int) -> Any:
    """numpy arrays, or dicts of them (Dict observation spaces), joined along ``axis``."""
    if isinstance(arrays[0], dict):
        return {k: _concat([a[k] for a in arrays], axis) for k in arrays[0]}
    return np.concatenate(arrays, axis=axis)


def _executor(name: str, n_actors: int, address: str | None, start_method: str | None) -> Any:
    if name == "ray":
        if start_method is not None:
            raise ValueError("start_method= is for local actors; Ray starts its own workers")
        from optix_distributed.executors.ray import RayExecutor

        return RayExecutor(n_actors, address)
    from optix_distributed.executors.local import LocalExecutor

    return LocalExecutor(n_actors, start_method)
