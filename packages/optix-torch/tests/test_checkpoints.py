"""Checkpoints of torch agents: safe loading, devices, mismatches, NaN recovery."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from optix_core import LoopCallback, RLOptimizer, VectorBatchPipeline, make_agent
from optix_torch.serialization import WEIGHTS, UnsafeCheckpointError

torch.set_num_threads(1)


class _Payload:
    """Unpickling this runs a command: what a booby-trapped checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_optimizer_file_carrying_a_pickle_payload_is_refused_unexecuted(tmp_path):
    agent = make_agent("a2c", "CartPole-v1", seed=0, device="cpu")
    agent.save_weights(str(tmp_path / "ckpt"))
    marker = tmp_path / "payload-ran"
    with open(tmp_path / "ckpt" / "optimizer-main.pt", "wb") as handle:
        pickle.dump({"state": _Payload(marker)}, handle, protocol=2)
    fresh = make_agent("a2c", "CartPole-v1", seed=1, device="cpu")
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        fresh.load_weights(str(tmp_path / "ckpt"))
    assert not marker.exists()


def test_weights_are_device_free_and_load_onto_the_agents_device(tmp_path):
    agent = make_agent("a2c", "CartPole-v1", seed=0, device="cpu")
    agent.save_weights(str(tmp_path / "ckpt"))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / WEIGHTS), framework="pt") as f:
        assert all(f.get_tensor(k).device.type == "cpu" for k in f.keys())  # noqa: SIM118 (not a dict)
    loaded = make_agent("a2c", "CartPole-v1", seed=1, device="cpu")
    loaded.load_weights(str(tmp_path / "ckpt"))
    for module in loaded.modules().values():
        assert all(p.device == loaded.device for p in module.parameters())
    for state in loaded.optimizer.state.values():
        assert all(v.device == loaded.device for v in state.values() if torch.is_tensor(v))


def test_a_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    small = make_agent("a2c", "CartPole-v1", seed=0, device="cpu")
    small.save_weights(str(tmp_path / "ckpt"))
    other = make_agent("a2c", "Acrobot-v1", seed=0, device="cpu")  # 6 inputs, 3 actions
    with pytest.raises(ValueError, match="does not match this agent"):
        other.load_weights(str(tmp_path / "ckpt"))


class NaNRewardAfter(gym.Wrapper):
    """Rewards become NaN after ``steps`` steps: a broken sensor, mid-run."""

    def __init__(self, env: gym.Env, steps: int) -> None:
        super().__init__(env)
        self.remaining = steps

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.remaining -= 1
        return obs, (float("nan") if self.remaining < 0 else reward), terminated, truncated, info


def test_a_nan_loss_rolls_back_to_the_best_checkpoint_and_never_saves_nan(tmp_path):
    agent = make_agent("a2c", "CartPole-v1", seed=0, device="cpu")
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
        max_episodes=20,
        windows_per_evaluation=1,  # A2C's are scored a hundred at a time by default
        callbacks=[CountRollbacks()],
    )
    report = loop.run()
    assert report.episodes == 20 and report.best_snapshot is not None
    assert set(range(11, 21)) <= set(rollbacks)  # every window with NaN rewards rolled back
    for module in agent.modules().values():
        assert all(torch.isfinite(p).all() for p in module.parameters())
    snapshots = list((tmp_path / "ckpt").glob("*-0*"))  # best-* and latest-* snapshots
    assert snapshots
    for snapshot in snapshots:
        restored = make_agent("a2c", "CartPole-v1", seed=1, device="cpu")
        restored.load_weights(str(snapshot / "agent"))
        for module in restored.modules().values():
            assert all(torch.isfinite(p).all() for p in module.parameters()), snapshot.name
    obs = np.zeros((3, 4), dtype=np.float32)
    assert np.isin(agent.act(obs, deterministic=True), [0, 1]).all()
