"""TD3's exploration noise, the same on every backend: Gaussian, or an
Ornstein-Uhlenbeck process (``ou_noise``).

Without ``ou_noise`` each action gets σ·ε with ε ~ N(0, 1) drawn afresh and
σ = ``expl_noise`` (Stable-Baselines3's ``NormalActionNoise``). With it,
while training acts, each environment's noise is an Ornstein-Uhlenbeck
process (SB3's ``OrnsteinUhlenbeckActionNoise``: θ 0.15, dt 0.01, mean 0),

    xₜ₊₁ = xₜ − θ·xₜ·dt + σ·√dt·εₜ,

restarted at 0 when that environment's episode starts. Its values stay
correlated for about 1/(θ·dt) ≈ 667 steps, so exploration pushes one way for
long stretches, which is what MountainCarContinuous needs to find its goal.
A stochastic ``act`` outside training, which knows no episodes, adds the
Gaussian noise. The process's state is kept in checkpoints, so a resumed run
explores on from where it was.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

OU_THETA, OU_DT = 0.15, 1e-2  # SB3's OrnsteinUhlenbeckActionNoise defaults


class TD3Exploration:
    """Mixed into a TD3 agent ahead of its base; the agent has ``hp``.

    A backend that acts in numpy uses ``unit_actions`` as it is; one that
    draws ε from its own stream calls ``exploration_noise(eps, training)``.
    ``act_info`` restarts the process of every environment whose episode
    starts, then acts as the base does.
    """

    _ou_state: np.ndarray | None = None  # [n_envs, action_dim] while training acts

    def exploration_noise(self, eps: np.ndarray, training: bool) -> np.ndarray:
        """The noise added to π(s) for draws ``eps`` (float32, one row per
        environment): σ·ε, or with ``ou_noise`` while training acts, the
        Ornstein-Uhlenbeck process stepped by ε."""
        sigma = float(self.hp["expl_noise"])  # type: ignore[attr-defined]
        if not (training and self.hp["ou_noise"]):  # type: ignore[attr-defined]
            return sigma * eps
        if self._ou_state is None or self._ou_state.shape != eps.shape:
            self._ou_state = np.zeros_like(eps)
        x = self._ou_state
        self._ou_state = (x - OU_THETA * x * OU_DT + sigma * math.sqrt(OU_DT) * eps).astype(
            np.float32
        )
        return self._ou_state

    def unit_actions(
        self, out: np.ndarray, deterministic: bool, rng: np.random.Generator
    ) -> np.ndarray:
        """Actions in [−1, 1] from the actor's output π(s): π(s) + noise, clipped;
        training acts with the agent's own generator (``rng``)."""
        if not deterministic:
            eps = rng.standard_normal(out.shape, dtype=np.float32)
            out = out + self.exploration_noise(eps, rng is self.rng)  # type: ignore[attr-defined]
        return np.clip(out, -1.0, 1.0)

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        if self._ou_state is not None and len(self._ou_state) == len(episode_start):
            self._ou_state[np.asarray(episode_start, dtype=bool)] = 0.0
        return super().act_info(observation, episode_start)  # type: ignore[misc]

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()  # type: ignore[misc]
        if self._ou_state is not None:
            state["ou_state"] = self._ou_state.tolist()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)  # type: ignore[misc]
        held = state.get("ou_state")
        self._ou_state = None if held is None else np.asarray(held, dtype=np.float32)
