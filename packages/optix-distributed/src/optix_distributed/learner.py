"""AsyncActorLearner: tensor-optix 1.10's actor-learner, without the loop.

The same learner (``ImpalaAgent``) and actors (``ActorLearnerPipeline``) that
``optix train --algo impala`` runs under RLOptimizer, driven here for a fixed
number of steps: collect a window from every actor, one V-trace step, repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_distributed.impala import ImpalaAgent
from optix_distributed.pipeline import ActorLearnerPipeline


class AsyncActorLearner:
    """IMPALA with ``n_actors`` actors and one V-trace learner.

    Args:
        actor: observations → the action distribution's parameters (logits for
            a Discrete space).
        critic: observations → ``[B, 1]`` values.
        optimizer: over the actor's and the critic's parameters; its learning
            rate is the learner's.
        env_factory: builds one environment; picklable (a module-level function
            or ``functools.partial``) for the ``spawn``/``forkserver`` start
            methods and for Ray.
        n_actors: actors collecting at once.
        trajectory_len: steps per trajectory (IMPALA's unroll length).
        gamma, rho_bar, c_bar, entropy_coef: V-trace's discount and clips, and
            the entropy bonus.
        seed: seeds the learner and, each its own, every actor.
        n_envs: environments per actor.
        executor, address, start_method: where actors run (``ActorLearnerPipeline``).
        max_grad_norm, vf_coef: the learner's gradient clip and value-loss weight.
        device: the learner's device.
    """

    def __init__(
        self,
        actor: nn.Module,
        critic: nn.Module,
        optimizer: torch.optim.Optimizer,
        env_factory: Callable[[], gym.Env],
        n_actors: int = 4,
        trajectory_len: int = 64,
        gamma: float = 0.99,
        rho_bar: float = 1.0,
        c_bar: float = 1.0,
        entropy_coef: float = 0.01,
        seed: int = 0,
        *,
        n_envs: int = 1,
        executor: str = "local",
        address: str | None = None,
        start_method: str | None = None,
        max_grad_norm: float = 40.0,
        vf_coef: float = 0.5,
        device: str = "cpu",
    ) -> None:
        probe = env_factory()
        spaces = probe.observation_space, probe.action_space
        probe.close()
        hyperparams = {
            "learning_rate": optimizer.param_groups[0]["lr"],
            "gamma": gamma,
            "rho_bar": rho_bar,
            "c_bar": c_bar,
            "entropy_coef": entropy_coef,
            "vf_coef": vf_coef,
            "max_grad_norm": max_grad_norm,
        }
        self.agent = ImpalaAgent(
            actor,
            optimizer,
            hyperparams,
            critic=critic,
            device=device,
            seed=seed,
            observation_space=spaces[0],
            action_space=spaces[1],
        )
        self.pipeline = ActorLearnerPipeline(
            n_envs=n_envs,
            window_size=trajectory_len,
            seed=seed,
            n_actors=n_actors,
            executor=executor,
            address=address,
            start_method=start_method,
            env_factory=env_factory,
        )
        self.pipeline.bind(self.agent)

    def run(self, max_steps: int) -> dict[str, Any]:
        """Train until ``max_steps`` env steps have been learned from; the actors are
        stopped when it returns or raises. Returns ``total_steps``, ``total_updates``,
        ``steps_per_second`` and ``elapsed`` (tensor-optix's keys), and
        ``actors_replaced``, ``mean_policy_lag`` and the ``episode_returns`` seen."""
        start = time.perf_counter()
        updates, lags, returns = 0, [], []
        try:
            while self.pipeline.env_steps < max_steps:
                window = self.pipeline.collect()
                self.agent.learn(window)
                updates += 1
                lags.extend(window.infos["policy_lag"].tolist())
                returns.extend(window.infos["episode_returns"].tolist())
        finally:
            self.pipeline.close()
        elapsed = time.perf_counter() - start
        steps = self.pipeline.env_steps
        return {
            "total_steps": steps,
            "total_updates": updates,
            "steps_per_second": steps / elapsed if elapsed > 0 else 0.0,
            "elapsed": elapsed,
            "actors_replaced": self.pipeline.executor.replaced,
            "mean_policy_lag": float(np.mean(lags)) if lags else 0.0,
            "episode_returns": returns,
        }
