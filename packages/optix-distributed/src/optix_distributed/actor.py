"""What an actor is, wherever it runs (a local process or a Ray actor).

An actor steps its own vector of environments with its own copy of the
policy, a trajectory of ``trajectory_len`` steps at a time, and records the
behaviour policy μ's log-probabilities for V-trace. Its weights are the
newest the learner published when the trajectory began; the trajectory
carries that version, so the learner knows each batch's policy lag.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.pipeline import VectorBatchPipeline
from optix_core.types import EpisodeData
from optix_distributed.weights import load_flat
from optix_torch.policies import observations as O
from optix_torch.policies.distributions import Distribution

# Seeds of actor i's incarnation k are spread apart: a replaced actor does not
# replay its predecessor's episodes.
ACTOR_SEED_STRIDE, INCARNATION_SEED_STRIDE = 10_007, 7_919


@dataclass
class ActorSpec:
    """Everything an actor builds itself from; picklable, so it travels to spawned
    processes and Ray actors. ``env_factory`` and the policy's class must then be
    importable there: module-level functions and classes of an installed module
    (Ray sends those of ``__main__`` by value, but not those of a module its
    workers cannot import)."""

    policy: nn.Module  # observations → the distribution's parameters, or (parameters, values)
    distribution: Distribution
    shared: bool  # whether ``policy`` returns (parameters, values)
    env_factory: Callable[[], gym.Env]
    n_envs: int
    trajectory_len: int
    seed: int

    @classmethod
    def of(
        cls,
        policy: nn.Module,
        distribution: Distribution,
        shared: bool,
        env_factory: Callable[[], gym.Env],
        n_envs: int,
        trajectory_len: int,
        seed: int,
    ) -> ActorSpec:
        """A spec holding a CPU copy of ``policy`` (the learner's stays where it is)."""
        return cls(
            copy.deepcopy(policy).cpu(),
            distribution,
            shared,
            env_factory,
            n_envs,
            trajectory_len,
            seed,
        )


@dataclass
class Trajectory:
    """``trajectory_len`` steps of one actor's environments, acted with weights ``version``."""

    actor_id: int
    incarnation: int
    version: int
    data: EpisodeData


class ActorFailed(RuntimeError):
    """An actor's environments or policy raised: a replacement would fail the same way,
    so the learner stops and says why (``trace`` holds the actor's traceback)."""

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.trace = trace

    def __reduce__(self) -> tuple:
        return ActorFailed, (str(self), self.trace)


class ActorPolicy:
    """The agent an actor's pipeline acts with: samples actions and records μ's
    log-probabilities (``act_info``), on the CPU, from its own generator."""

    def __init__(self, spec: ActorSpec, seed: int) -> None:
        self.network = spec.policy
        self.distribution = spec.distribution
        self.shared = spec.shared
        self.generator = torch.Generator().manual_seed(seed)

    @torch.inference_mode()
    def _params(self, observation: Any) -> np.ndarray:
        # optix-torch's ActorCritic on flat observations acts in numpy, over its
        # parameters' own memory: a third of torch's per-call cost on a few rows.
        numpy_forward = getattr(self.network, "numpy_forward", None)
        out = numpy_forward(observation) if numpy_forward is not None else None
        if out is None:
            out = self.network(O.to_tensor(observation, torch.device("cpu")))
            out = tuple(o.float().numpy() for o in out) if self.shared else out.float().numpy()
        return out[0] if self.shared else out

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        return self.distribution.sample(self._params(observation), self.generator)

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        params = self._params(observation)
        if deterministic:
            return self.distribution.mode(params)
        return self.distribution.sample(params, self.generator)[0]

    def reset_state(self, mask: np.ndarray) -> None:
        """Feed-forward policies keep no state between steps."""


class Actor:
    """Actor ``actor_id``'s ``incarnation``-th life: environments, policy, weights version."""

    def __init__(self, spec: ActorSpec, actor_id: int, incarnation: int = 0) -> None:
        torch.set_num_threads(1)  # one core per actor: acting is a small batch
        seed = (
            spec.seed + ACTOR_SEED_STRIDE * (actor_id + 1) + INCARNATION_SEED_STRIDE * incarnation
        )
        self.actor_id, self.incarnation = actor_id, incarnation
        self.policy = ActorPolicy(spec, seed)
        self.pipeline = VectorBatchPipeline(
            env_fns=[spec.env_factory] * spec.n_envs, window_size=spec.trajectory_len, seed=seed
        )
        self.pipeline.bind(self.policy)
        self.version = 0

    def load(self, version: int, weights: np.ndarray) -> None:
        load_flat(self.policy.network, weights)
        self.version = version

    def collect(self) -> Trajectory:
        data = self.pipeline.collect()
        return Trajectory(self.actor_id, self.incarnation, self.version, data)

    def close(self) -> None:
        self.pipeline.close()
