"""A TensorFlow agent under the loop: a NaN loss rolls back to the best checkpoint,
and a run's checkpoint loads into a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from optix_core import LoopCallback, RLOptimizer, VectorBatchPipeline, make_agent


class NaNRewardAfter(gym.Wrapper):
    """Rewards become NaN after ``steps`` steps: a broken sensor, mid-run."""

    def __init__(self, env: gym.Env, steps: int) -> None:
        super().__init__(env)
        self.remaining = steps

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.remaining -= 1
        return obs, (float("nan") if self.remaining < 0 else reward), terminated, truncated, info


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_a_nan_loss_rolls_back_to_the_best_checkpoint_and_never_saves_nan(algo, tmp_path):
    agent = make_agent(algo, "CartPole-v1", backend="tf", seed=0, device="cpu")
    pipeline = VectorBatchPipeline(
        env_fns=[lambda: NaNRewardAfter(gym.make("CartPole-v1"), steps=200)], window_size=20, seed=0
    )
    rollbacks = []

    class CountRollbacks(LoopCallback):
        def on_degradation(self, episode_id, metrics):
            rollbacks.append(episode_id)

    loop = RLOptimizer(
        agent,
        pipeline,
        checkpoint_dir=tmp_path / "ckpt",
        max_episodes=16,
        windows_per_evaluation=1,  # A2C's are scored a hundred at a time by default
        callbacks=[CountRollbacks()],
    )
    report = loop.run()
    assert report.episodes == 16 and report.best_snapshot is not None
    assert set(range(11, 17)) <= set(rollbacks)  # every window with NaN rewards rolled back
    assert all(np.isfinite(v.numpy()).all() for v in agent.variables)
    for snapshot in (tmp_path / "ckpt").glob("*-0*"):  # best-* and latest-* snapshots
        restored = make_agent(algo, "CartPole-v1", backend="tf", seed=1, device="cpu")
        restored.load_weights(str(snapshot / "agent"))
        assert all(np.isfinite(v.numpy()).all() for v in restored.variables), snapshot.name
    assert np.isin(agent.act(np.zeros((3, 4), np.float32), deterministic=True), [0, 1]).all()


def test_a_runs_checkpoint_loads_in_a_new_process(tmp_path):
    """`optix train --backend tf`, then `optix eval` of the run in another process:
    the best checkpoint loads into a fresh agent and plays."""
    cli = [sys.executable, "-m", "optix_core.cli"]
    train = subprocess.run(
        [
            *cli,
            "train",
            "CartPole-v1",
            "--backend",
            "tf",
            "--seed",
            "0",
            "--max-windows",
            "2",
            "--run-dir",
            "runs",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stdout + train.stderr
    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "report.json").read_text())["windows"] == 2
    evaluate = subprocess.run(
        [*cli, "eval", str(run), "--episodes", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluate.returncode == 0, evaluate.stdout + evaluate.stderr
    assert "ppo (tf) best-" in evaluate.stdout and "over 3 episodes" in evaluate.stdout, (
        evaluate.stdout
    )
