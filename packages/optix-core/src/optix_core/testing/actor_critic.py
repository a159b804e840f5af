"""What every backend's SAC and TD3 tests share: Pendulum's spaces and windows, the
conformance suite on the pointer environments, a checkpoint round trip with the
replay, and learning Pendulum and to point (``make`` is a backend's ``make_sac`` or
``make_td3``: ``make(observation_space, action_space, *, hyperparams, device, seed,
hidden)``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from optix_core.evaluation import PolicyEvaluation
from optix_core.testing import (
    AgentConformance,
    toy_envs,  # registers the optix-tests/ environments
)
from optix_core.testing.learning_runs import collect_windows, learn_and_evaluate
from optix_core.types import EpisodeData

PENDULUM = gym.make("Pendulum-v1")
OBS, ACT = PENDULUM.observation_space, PENDULUM.action_space


class PointerConformance(AgentConformance):
    """The conformance suite for an agent with Box actions (its subclass names ``algo``
    and ``backend``) on image (uint8), Dict and Discrete observations."""

    env_ids = tuple(toy_envs.POINTER_ENVS)
    n_envs, window_size = 2, 64  # 128 transitions: past learning_starts (100), 14 updates


def collect(
    agent, window: int = 50, n_envs: int = 2, seed: int = 0, windows: int = 1
) -> list[EpisodeData]:
    """``windows`` consecutive windows of ``n_envs`` Pendulums stepped ``window`` times,
    ``agent`` acting: ``collect_windows``."""
    return collect_windows(agent, "Pendulum-v1", windows, n_envs, window, seed)


def resume(agent, fresh, tmp_path: Path):
    """Save ``agent``'s checkpoint to ``tmp_path``/ckpt and load it into ``fresh`` (an
    agent built alike, with another seed); check that ``fresh``'s replay then holds the
    same transitions, every field of each. Returns ``fresh``."""
    agent.save_weights(str(tmp_path / "ckpt"))
    fresh.load_weights(str(tmp_path / "ckpt"))
    assert len(fresh.replay) == len(agent.replay)
    rows = np.arange(len(agent.replay))
    for key, value in agent.replay.buffer.get(rows).items():
        np.testing.assert_array_equal(fresh.replay.buffer.get(rows)[key], value, err_msg=key)
    return fresh


def learn_pendulum(make: Callable[..., Any], windows: int) -> PolicyEvaluation:
    """The agent ``make`` (``make_sac`` or ``make_td3``) builds for Pendulum: ReLU
    [64, 64], lr 1e-3, its other defaults, seed 0; its evaluation after ``windows``
    windows of 200 steps (``learn_and_evaluate``)."""
    agent = make(
        OBS, ACT, hyperparams={"learning_rate": 1e-3}, device="cpu", seed=0, hidden=(64, 64)
    )
    return learn_and_evaluate(agent, "Pendulum-v1", windows=windows, window_size=200)


def learn_to_point(
    make: Callable[..., Any], env_id: str, windows: int, learning_rate: float = 1e-3
) -> PolicyEvaluation:
    """The agent ``make`` (``make_sac`` or ``make_td3``) builds for ``env_id``: ReLU
    [64, 64] after the default extractor, ``learning_rate``, batch 64, seed 0; its
    evaluation after ``windows`` windows of 64 steps (``learn_and_evaluate``)."""
    env = gym.make(env_id)
    agent = make(
        env.observation_space,
        env.action_space,
        hyperparams={"learning_rate": learning_rate, "batch_size": 64},
        device="cpu",
        seed=0,
        hidden=(64, 64),
    )
    return learn_and_evaluate(agent, env_id, windows=windows, window_size=64)
