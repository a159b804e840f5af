"""A run stopped and resumed is the run never stopped: the loop, the pipeline and the agent together."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optix_core import RLOptimizer, VectorBatchPipeline, make_agent
from optix_core.callbacks import LoopCallback
from optix_core.optimizers import SPSAOptimizer
from optix_core.types import EvalMetrics, HyperparamSet


class Windows(LoopCallback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, float, float]] = []
        self.proposed: list[tuple[int, float]] = []

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        self.seen.append((episode_id, metrics.primary_score, metrics.metrics["env_steps"]))

    def on_hyperparam_update(self, old: HyperparamSet, new: HyperparamSet) -> None:
        self.proposed.append((new.episode_id, new.params["noise_std"]))


def run(directory: Path, max_episodes: int, resume: bool = False) -> tuple[Windows, np.ndarray]:
    # CEM's candidates are drawn per episode, and four environments × 60 steps
    # leave episodes open at every window's end.
    agent = make_agent("cem", "CartPole-v1", seed=0)
    pipeline = VectorBatchPipeline(env_id="CartPole-v1", n_envs=4, window_size=60, seed=0)
    windows = Windows()
    try:
        RLOptimizer(
            agent,
            pipeline,
            checkpoint_dir=directory,
            resume=resume,
            max_episodes=max_episodes,
            optimizer=SPSAOptimizer.from_search_space(
                agent.search_space, seed=0
            ),  # tunes noise_std
            callbacks=[windows],
        ).run()
    finally:
        pipeline.close()
    return windows, agent.mean.copy()


def test_a_resumed_run_scores_and_learns_as_the_run_never_stopped(tmp_path):
    """Stopped after five windows with every episode open and resumed: the same
    scores, online tuning's proposals and weights as the run never stopped."""
    straight, straight_mean = run(tmp_path / "straight", 12)
    run(tmp_path / "split", 5)
    resumed, resumed_mean = run(tmp_path / "split", 12, resume=True)
    after = [w for w in straight.seen if w[0] > 5]  # the windows the scheduler evaluated
    assert len(after) >= 2 and resumed.seen == after
    proposed = [p for p in straight.proposed if p[0] > 5]
    assert len(proposed) >= 2 and resumed.proposed == proposed
    np.testing.assert_array_equal(resumed_mean, straight_mean)
