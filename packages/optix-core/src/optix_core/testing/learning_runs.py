"""Windows collected with ``VectorBatchPipeline`` and learning runs over one: what an
agent's tests (every backend's, a plugin's) use to check that it learns an env."""

import numpy as np

from optix_core.evaluation import PolicyEvaluation, evaluate_policy
from optix_core.pipeline import VectorBatchPipeline
from optix_core.types import EpisodeData

# Q-learning settings that update within a test's first 64-step window: train_freq
# 64 vector steps, 8 gradient steps on batches of 32 (DQN's and Rainbow's tests).
FAST = {
    "learning_starts": 64,
    "batch_size": 32,
    "train_freq": 64,
    "gradient_steps": 8,
    "target_update_freq": 5,
}


def collect_windows(
    agent, env_id: str, count: int, n_envs: int, window: int, seed: int
) -> list[EpisodeData]:
    """``count`` consecutive windows of ``n_envs`` × ``window`` steps from one pipeline,
    ``agent`` acting; the agent does not learn from them."""
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=n_envs, window_size=window, seed=seed, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(count)]
    finally:
        pipeline.close()


def learn_and_evaluate(
    agent, env_id: str, windows: int, window_size: int, episodes: int = 20
) -> PolicyEvaluation:
    """Learn from ``windows`` windows of ``window_size`` steps of one environment (seed
    0), one ``learn`` after each; then the deterministic policy's returns on
    ``episodes`` episodes seeded from 10,000."""
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=1, window_size=window_size, seed=0, agent=agent
    )
    try:
        for _ in range(windows):
            agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    return evaluate_policy(agent, env_id, episodes=episodes, seed=10_000)


def learn_with_evaluations(
    agent,
    env_id: str,
    env_steps: int,
    stop_at: float | None = None,
    *,
    n_envs: int = 1,
    window_size: int = 256,
    every: int = 2560,
    seed: int = 0,
) -> list[float]:
    """Learn from windows of ``n_envs`` × ``window_size`` steps (environments seeded
    from ``seed``) for ``env_steps`` env steps, every update's stats finite; every
    ``every`` env steps a deterministic 20-episode evaluation (the i-th seeded from
    10,000 + i), stopping after the first that scores ``stop_at`` or more. Returns
    the evaluations' mean returns."""
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=n_envs, window_size=window_size, seed=seed, agent=agent
    )
    scores: list[float] = []
    try:
        while pipeline.env_steps < env_steps:
            stats = agent.learn(pipeline.collect())
            assert all(np.isfinite(v) for v in stats.values())
            if pipeline.env_steps % every == 0:
                scores.append(evaluate_policy(agent, env_id, 20, seed=10_000 + len(scores)).mean)
                if stop_at is not None and scores[-1] >= stop_at:
                    break
    finally:
        pipeline.close()
    return scores
