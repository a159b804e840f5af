"""Hill climbing on a linear policy: the smallest agent that honours optix's contract.

Each episode plays a perturbed copy of the best parameters so far; a copy
whose episode return matches or beats the best replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from optix_core import BaseAgent, Bound, EpisodeData, HyperparamSet, check_hyperparams

BOUNDS = {"step_size": Bound(0.0, 10.0, open_low=True)}


class HillClimbAgent(BaseAgent):
    def __init__(self, obs_dim: int, n_actions: int, hyperparams: HyperparamSet, seed: int | None):
        self.hp = HyperparamSet(check_hyperparams(hyperparams.params, BOUNDS, "hill-climb"))
        self.rng = np.random.default_rng(seed)
        self.best = np.zeros((obs_dim, n_actions))
        self.best_return = -np.inf
        self.candidates: np.ndarray | None = None

    def act(self, observation, deterministic=False):
        return (np.asarray(observation) @ self.best).argmax(1)

    def act_info(self, observation, episode_start):
        obs = np.asarray(observation)
        if self.candidates is None or len(self.candidates) != len(obs):
            self.candidates = np.repeat(self.best[None], len(obs), axis=0)
            episode_start = np.ones(len(obs), dtype=bool)
        for i in np.flatnonzero(episode_start):
            noise = self.rng.standard_normal(self.best.shape)
            self.candidates[i] = self.best + self.hp.params["step_size"] * noise
        actions = np.einsum("ni,nia->na", obs, self.candidates).argmax(1)
        return actions, {"params": self.candidates}

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        params = episode_data.policy_info["params"]
        dones, rewards = episode_data.dones, episode_data.rewards
        for column in range(rewards.shape[1]):
            starts = np.concatenate([[0], np.flatnonzero(dones[:, column])[:-1] + 1])
            for start, end in zip(starts, np.flatnonzero(dones[:, column]), strict=False):
                total = float(rewards[start : end + 1, column].sum())
                if start > 0 and total >= self.best_return:  # whole episodes only
                    self.best, self.best_return = params[start, column].copy(), total
        return {"best_return": float(self.best_return)}

    def get_hyperparams(self) -> HyperparamSet:
        return self.hp.copy()

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        self.hp = HyperparamSet(check_hyperparams(hyperparams.params, BOUNDS, "hill-climb"))

    def save_weights(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        np.save(Path(path) / "best.npy", self.best)
        (Path(path) / "state.json").write_text(json.dumps({"best_return": self.best_return}))

    def load_weights(self, path: str) -> None:
        self.best = np.load(Path(path) / "best.npy", allow_pickle=False)
        self.best_return = json.loads((Path(path) / "state.json").read_text())["best_return"]


def make_agent(observation_space, action_space, *, hyperparams=None, device="auto", seed=None):
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError("hill-climb acts on Discrete action spaces only")
    hp = hyperparams or HyperparamSet({"step_size": 0.5})
    return HillClimbAgent(int(np.prod(observation_space.shape)), int(action_space.n), hp, seed)
