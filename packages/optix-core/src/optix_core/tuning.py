"""ProposalEvidence: what an online optimizer may be scored on.

Hyperparameters proposed after window ``w`` first shape the update of window
``w + 1``, and so the policy that collects window ``w + 2``. Window ``w + 1``
itself, and every episode that began before window ``w + 2``, were collected
by a policy trained under the *previous* hyperparameters. Scoring a proposal
on them (as tensor-optix did, scoring each window right after proposing) lets
the optimizer see the consequences of its previous proposal and step the wrong
way. So after each proposal the evidence restarts:

    skip the next window          (collected before any update under the proposal)
    since = env steps at its end
    keep episodes that began at or after ``since``, across windows,
    until ``min_episodes`` of them have ended

and the evaluator scores the latest window with only those episodes as its
``recent_returns``. A pipeline that reports no episodes (a live source cut
into windows) gives window-level evidence instead: the first window after the
skipped one. When the optimizer keeps the hyperparameters as they were, the
next evidence needs no skip.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optix_core.types import EpisodeData


class ProposalEvidence:
    """Collects the experience gathered entirely under the hyperparameters in force.

    ``min_episodes=None`` waits for as many episodes as the window has
    environment columns (at least one).
    """

    def __init__(self, min_episodes: int | None = None) -> None:
        if min_episodes is not None and min_episodes < 1:
            raise ValueError(f"min_episodes must be >= 1 or None, got {min_episodes}")
        self.min_episodes = min_episodes
        self.skip = 1  # the first window is collected before any update at all
        self.since: int | None = None
        self.returns: list[float] = []

    def restart(self, changed: bool = True) -> None:
        """New hyperparameters (or a rollback): evidence starts after the next window."""
        self.skip = 1 if changed else 0
        self.since = None
        self.returns = []

    def observe(self, data: EpisodeData, env_steps: int) -> EpisodeData | None:
        """Take a learned window (``env_steps``: the pipeline's count at its end);
        return the window to score once the evidence is complete, else None."""
        if self.skip:
            self.skip -= 1
            self.since = env_steps
            return None
        if self.since is None:  # no skip asked for: this window counts whole
            self.since = env_steps - data.n_steps
        infos = data.infos
        if "episode_returns" not in infos:
            return data
        returns = np.asarray(infos["episode_returns"], dtype=np.float64)
        starts = np.asarray(infos.get("episode_start_steps", ()), dtype=np.int64)
        if starts.size != returns.size:
            raise ValueError(
                "the pipeline reports episode_returns without episode_start_steps; an "
                "online optimizer cannot tell which episodes ran under its proposal"
            )
        self.returns.extend(returns[starts >= self.since].tolist())
        wanted = self.min_episodes or max(1, _columns(data))
        if len(self.returns) < wanted:
            return None
        evidence = np.asarray(self.returns, dtype=np.float64)
        return dataclasses.replace(
            data, infos={**infos, "recent_returns": evidence, "episode_returns": evidence}
        )

    def state_dict(self) -> dict[str, Any]:
        return {"skip": self.skip, "since": self.since, "returns": list(self.returns)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skip = int(state.get("skip", 1))
        self.since = state.get("since")
        self.returns = [float(x) for x in state.get("returns", ())]


def _columns(data: EpisodeData) -> int:
    rewards = np.asarray(data.rewards)
    return int(rewards.shape[1]) if rewards.ndim > 1 else 1
