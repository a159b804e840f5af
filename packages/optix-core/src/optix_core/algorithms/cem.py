"""The noisy cross-entropy method on a small numpy policy.

Szita & Lőrincz (2006), "Learning Tetris Using the Noisy Cross-Entropy
Method". The policy's parameters θ are drawn from a diagonal Gaussian
N(μ, σ²). Every episode is played by one candidate θᵢ; once a population of
episodes has ended, the best ``elite_frac`` of them define the next
distribution:

    μ ← mean(θ_elite)                          (CEM update)
    σ ← std(θ_elite) + noise_std               (the added noise keeps σ from
                                                collapsing onto a lucky elite)

Candidates are sampled in ``act_info`` whenever an environment starts an
episode, and travel to ``learn`` in ``policy_info["params"]``, so learning
needs nothing but the window. Episodes that straddle windows are summed
across them. ``act(deterministic=True)`` plays the mean policy μ.

The policy is linear (``hidden_size=0``) or has one tanh hidden layer. For a
Discrete action space it takes the argmax; for a Box it squashes with tanh
into the box's bounds.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from optix_core.agent import BaseAgent
from optix_core.algorithms.cem_config import BOUNDS, DEFAULTS, ONLINE_SEARCH_SPACE
from optix_core.hyperparams import Bound, check_hyperparams
from optix_core.types import EpisodeData, HyperparamSet


class CEMAgent(BaseAgent):
    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hyperparams: HyperparamSet | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(f"cem needs a Box observation space, got {observation_space}")
        if isinstance(action_space, gym.spaces.Discrete):
            self._n_out = int(action_space.n)
            self._discrete = True
        elif isinstance(action_space, gym.spaces.Box):
            self._n_out = int(np.prod(action_space.shape))
            self._discrete = False
        else:
            raise ValueError(f"cem acts on Discrete or Box action spaces, got {action_space}")
        self.action_space = action_space
        self._obs_dim = int(np.prod(observation_space.shape))
        params = {**DEFAULTS, **(hyperparams.params if hyperparams else {})}
        self._hp = HyperparamSet(
            check_hyperparams(params, BOUNDS, "cem"), hyperparams.episode_id if hyperparams else 0
        )
        self._shapes = self._layer_shapes(self._hp.params["hidden_size"])
        n_params = sum(math.prod(s) for s in self._shapes)
        seeds = np.random.SeedSequence(seed).spawn(2)
        self._rollout_rng = np.random.default_rng(seeds[0])  # candidates for training
        self._act_rng = np.random.default_rng(seeds[1])  # stochastic act(): never touches training
        self.mean = np.zeros(n_params)
        self.std = np.full(n_params, float(self._hp.params["init_std"]))
        self.generation = 0
        self._pending: list[tuple[np.ndarray, float]] = []
        self._open: dict[int, tuple[np.ndarray, float]] = {}
        self._candidates: np.ndarray | None = None
        self._interrupted: tuple[np.ndarray, dict[int, tuple[np.ndarray, float]]] | None = None

    # ---- acting -----------------------------------------------------------

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        obs = self._batch(observation)
        if deterministic:
            return self._policy(obs, self.mean[None])
        theta = self.mean + self.std * self._act_rng.standard_normal((len(obs), self.mean.size))
        return self._policy(obs, theta)

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        obs = self._batch(observation)
        if self._candidates is None or len(self._candidates) != len(obs):
            self._candidates = np.empty((len(obs), self.mean.size))
            episode_start = np.ones(len(obs), dtype=bool)
        fresh = np.flatnonzero(episode_start)
        if fresh.size:
            noise = self._rollout_rng.standard_normal((fresh.size, self.mean.size))
            self._candidates[fresh] = self.mean + self.std * noise
        return self._policy(obs, self._candidates), {"params": self._candidates}

    def _policy(self, obs: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Actions for each row of ``obs`` under the matching row of ``theta``
        (a single row of ``theta`` is shared by all)."""
        layers = self._unflatten(theta)
        h = obs
        for i, (w, b) in enumerate(layers):
            h = np.einsum("ni,nio->no", h, w) + b
            if i < len(layers) - 1:
                h = np.tanh(h)
        if self._discrete:
            return h.argmax(axis=1)
        low, high = self.action_space.low.reshape(1, -1), self.action_space.high.reshape(1, -1)
        squashed = np.tanh(h)
        bounded = np.isfinite(low) & np.isfinite(high)
        scaled = np.where(bounded, low + (squashed + 1.0) * 0.5 * (high - low), h)
        return scaled.reshape((len(obs), *self.action_space.shape)).astype(self.action_space.dtype)

    def _batch(self, observation: Any) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float64)
        return obs.reshape(-1, self._obs_dim)

    def _layer_shapes(self, hidden: int) -> list[tuple[int, ...]]:
        sizes = [self._obs_dim, hidden, self._n_out] if hidden else [self._obs_dim, self._n_out]
        shapes: list[tuple[int, ...]] = []
        for n_in, n_out in itertools.pairwise(sizes):
            shapes += [(n_in, n_out), (n_out,)]
        return shapes

    def _unflatten(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        arrays, start = [], 0
        for shape in self._shapes:
            size = math.prod(shape)
            arrays.append(theta[:, start : start + size].reshape(len(theta), *shape))
            start += size
        return list(zip(arrays[0::2], arrays[1::2], strict=True))

    # ---- learning ---------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        params = episode_data.policy_info.get("params")
        if params is None:
            raise ValueError(
                "cem learns from policy_info['params']: collect its windows with a "
                "non-deterministic pipeline, which records what act_info returns"
            )
        rewards = np.asarray(episode_data.rewards, dtype=np.float64)
        dones = episode_data.dones
        for column in range(rewards.shape[1]):
            self._collect_column(params[:, column], rewards[:, column], dones[:, column], column)
        diagnostics = {"generation": float(self.generation), "pending": float(len(self._pending))}
        if len(self._pending) >= self._hp.params["population_size"]:
            diagnostics.update(self._update())
        return diagnostics

    def _collect_column(
        self, params: np.ndarray, rewards: np.ndarray, dones: np.ndarray, column: int
    ) -> None:
        start = 0
        carried = self._open.pop(column, None)
        for end in [*np.flatnonzero(dones), len(rewards) - 1]:
            if end < start:
                continue
            total = float(rewards[start : end + 1].sum())
            if start == 0 and carried is not None and np.array_equal(carried[0], params[0]):
                total += carried[1]  # the rest of an episode begun in an earlier window
            if dones[end]:
                self._pending.append((params[start].copy(), total))
            else:
                self._open[column] = (params[start].copy(), total)
            start = end + 1

    def _update(self) -> dict[str, float]:
        thetas = np.stack([theta for theta, _ in self._pending])
        returns = np.array([ret for _, ret in self._pending])
        n_elite = max(1, round(self._hp.params["elite_frac"] * len(returns)))
        elite = np.argsort(returns)[-n_elite:]
        self.mean = thetas[elite].mean(axis=0)
        self.std = thetas[elite].std(axis=0) + self._hp.params["noise_std"]
        self.generation += 1
        self._pending = []
        return {
            "generation": float(self.generation),
            "mean_return": float(returns.mean()),
            "elite_return": float(returns[elite].mean()),
            "std": float(self.std.mean()),
        }

    # ---- hyperparameters and weights ---------------------------------------

    def get_hyperparams(self) -> HyperparamSet:
        return self._hp.copy()

    @property
    def hyperparam_bounds(self) -> dict[str, Bound]:
        return dict(BOUNDS)

    @property
    def search_space(self) -> dict[str, tuple]:
        return dict(ONLINE_SEARCH_SPACE)

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        params = check_hyperparams({**self._hp.params, **hyperparams.params}, BOUNDS, "cem")
        if params["hidden_size"] != self._hp.params["hidden_size"]:
            raise ValueError("cem: hidden_size is fixed once the agent is built")
        self._hp = HyperparamSet(params, hyperparams.episode_id)

    def save_weights(self, path: str) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        pending_thetas = (
            np.stack([t for t, _ in self._pending])
            if self._pending
            else np.zeros((0, self.mean.size))
        )
        columns = sorted(self._open)
        np.savez(
            directory / "cem.npz",
            mean=self.mean,
            std=self.std,
            pending_thetas=pending_thetas,
            pending_returns=np.array([r for _, r in self._pending], dtype=np.float64),
            # the episodes under way: each column's candidate, and the returns so far
            candidates=np.zeros((0, self.mean.size))
            if self._candidates is None
            else self._candidates,
            open_columns=np.array(columns, dtype=np.int64),
            open_thetas=np.array([self._open[c][0] for c in columns]).reshape(-1, self.mean.size),
            open_returns=np.array([self._open[c][1] for c in columns], dtype=np.float64),
        )
        state = {
            "generation": self.generation,
            "hyperparams": self._hp.to_dict(),
            "rollout_rng": self._rollout_rng.bit_generator.state,
            "act_rng": self._act_rng.bit_generator.state,
        }
        (directory / "cem.json").write_text(json.dumps(state))

    def load_weights(self, path: str) -> None:
        directory = Path(path)
        with np.load(directory / "cem.npz", allow_pickle=False) as arrays:
            if arrays["mean"].shape != self.mean.shape:
                raise ValueError(
                    f"cem checkpoint holds {arrays['mean'].size} parameters, this policy has "
                    f"{self.mean.size}: it was saved for other spaces or hidden_size"
                )
            self.mean = arrays["mean"].copy()
            self.std = arrays["std"].copy()
            self._pending = list(
                zip(
                    arrays["pending_thetas"].copy(), arrays["pending_returns"].tolist(), strict=True
                )
            )
            held = "candidates" in arrays.files and len(arrays["candidates"])
            self._interrupted = (
                (
                    arrays["candidates"].copy(),
                    {
                        int(c): (theta.copy(), float(r))
                        for c, theta, r in zip(
                            arrays["open_columns"],
                            arrays["open_thetas"],
                            arrays["open_returns"],
                            strict=True,
                        )
                    },
                )
                if held
                else None
            )
        state = json.loads((directory / "cem.json").read_text())
        self.generation = int(state["generation"])
        self._hp = HyperparamSet.from_dict(state["hyperparams"])
        self._rollout_rng.bit_generator.state = state["rollout_rng"]
        self._act_rng.bit_generator.state = state["act_rng"]
        self._open = {}
        self._candidates = None

    def continue_episodes(self) -> bool:
        """Each column acts on with the candidate its episode was drawn with, and
        adds to the return it had."""
        if self._interrupted is None:
            return False
        self._candidates, self._open = self._interrupted
        self._interrupted = None
        return True


def make_cem(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> CEMAgent:
    """The AgentSpec factory; ``device`` is accepted for the contract, numpy runs on the CPU."""
    if device not in ("auto", "cpu"):
        raise ValueError(f"cem runs on the CPU with numpy; device {device!r} is not available")
    return CEMAgent(observation_space, action_space, hyperparams=hyperparams, seed=seed)
