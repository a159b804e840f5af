"""optix_core.compute_gae against Stable-Baselines3's RolloutBuffer on the same windows.

SB3 handles a time-limit truncation in its rollout loop, not in the buffer: at a
step that was truncated (and not terminated) it adds ``gamma * V(terminal_obs)``
to the reward, then treats the step as an episode end. The comparison feeds SB3
exactly that, and feeds optix the raw rewards with ``final_values``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch  # before SB3, so nothing can import tensorflow first (see DESIGN.md)
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from optix_core.returns import compute_gae


def sb3_gae(w, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    t, n = w["rewards"].shape
    buf = RolloutBuffer(
        t,
        spaces.Box(-1, 1, (1,), np.float32),
        spaces.Box(-1, 1, (1,), np.float32),
        device="cpu",
        gae_lambda=lam,
        gamma=gamma,
        n_envs=n,
    )
    done = w["terminated"] | w["truncated"]
    bootstrap_truncated = w["truncated"] & ~w["terminated"]
    rewards = w["rewards"] + np.where(bootstrap_truncated, gamma * w["final_values"], 0.0)
    # SB3 marks the first step of each episode; where step t - 1 ended one, step t starts one.
    # (Its flag on the window's first step is never read.)
    episode_start = np.vstack([np.zeros((1, n), bool), done[:-1]])
    for step in range(t):
        buf.add(
            np.zeros((n, 1), np.float32),
            np.zeros((n, 1), np.float32),
            rewards[step],
            episode_start[step],
            torch.as_tensor(w["values"][step]),
            torch.zeros(n),
        )
    buf.compute_returns_and_advantage(torch.as_tensor(w["next_values"]), done[-1])
    return buf.advantages, buf.returns


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.5), (0.999, 1.0)])
def test_compute_gae_matches_sb3_rollout_buffer(seed, gamma, lam):
    rng = np.random.default_rng(seed)
    t, n = 64, 8
    ends = rng.random((t, n)) < 0.1
    kind = rng.integers(0, 3, size=(t, n))  # terminated, truncated, or both flags set
    terminated = ends & (kind != 1)
    truncated = ends & (kind != 0)
    w = {
        # float32 data, as SB3 stores it, so both sides start from the same numbers
        "rewards": rng.normal(size=(t, n)).astype(np.float32),
        "values": rng.normal(size=(t, n)).astype(np.float32),
        "terminated": terminated,
        "truncated": truncated,
        "next_values": rng.normal(size=n).astype(np.float32),
        "final_values": rng.normal(size=(t, n)).astype(np.float32),
    }
    assert terminated.any() and (truncated & ~terminated).any() and (terminated & truncated).any()
    adv, ret = compute_gae(**w, gamma=gamma, lam=lam)
    sb3_adv, sb3_ret = sb3_gae(w, gamma, lam)
    np.testing.assert_allclose(adv, sb3_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, sb3_ret, rtol=1e-5, atol=1e-5)
