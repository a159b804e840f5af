"""CheckpointRegistry: atomic, verified, pruned snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.algorithms.cem import CEMAgent
from optix_core.checkpoints import CheckpointError, CheckpointRegistry, CorruptCheckpointError
from optix_core.registry import make_agent
from optix_core.types import EpisodeData, EvalMetrics, HyperparamSet


class ArrayAgent(BaseAgent):
    """Weights are one numpy vector, saved as ``w.npy``."""

    def __init__(self, weights=(0.0, 0.0, 0.0), hyperparams=None) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.hp = HyperparamSet(dict(hyperparams or {"learning_rate": 0.01}))

    def act(self, observation, deterministic=False):
        return np.zeros(len(observation), dtype=np.int64)

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        return {}

    def get_hyperparams(self) -> HyperparamSet:
        return self.hp.copy()

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        self.hp = hyperparams.copy()

    def save_weights(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        np.save(Path(path) / "w.npy", self.weights)

    def load_weights(self, path: str) -> None:
        self.weights = np.load(Path(path) / "w.npy", allow_pickle=False)


def save(registry, agent, score, kind="best", episode=1, **kwargs):
    return registry.save(
        agent,
        kind=kind,
        episode_id=episode,
        eval_metrics=EvalMetrics(primary_score=score, metrics={"m": 1.0}, episode_id=episode),
        score=score,
        hyperparams=agent.get_hyperparams(),
        **kwargs,
    )


def snapshot_dirs(directory: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(prefix))


# ---- writing and reading ---------------------------------------------------


def test_cem_agent_round_trips_through_a_snapshot(tmp_path):
    agent = make_agent("cem", "CartPole-v1", seed=0)
    agent.mean = np.random.default_rng(0).normal(size=agent.mean.shape)
    agent.std = np.full_like(agent.std, 0.123)
    agent.generation = 7
    registry = CheckpointRegistry(tmp_path)
    snapshot = save(registry, agent, 321.5, episode=12)
    assert snapshot.score == 321.5
    assert snapshot.episode_id == 12
    assert Path(snapshot.path).is_dir()

    fresh = make_agent("cem", "CartPole-v1", seed=1)
    assert not np.array_equal(fresh.mean, agent.mean)
    manifest = CheckpointRegistry(tmp_path).restore(fresh)
    assert manifest is not None
    assert manifest["path"] == snapshot.path
    np.testing.assert_array_equal(fresh.mean, agent.mean)
    np.testing.assert_array_equal(fresh.std, agent.std)
    assert fresh.generation == 7
    # The two agents act the same from now on.
    obs = np.random.default_rng(1).normal(size=(32, 4))
    np.testing.assert_array_equal(
        fresh.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    )


def test_manifest_holds_hashes_versions_hyperparams_and_scores(tmp_path):
    agent = ArrayAgent([1.0, 2.0], hyperparams={"learning_rate": 3e-4, "gamma": 0.99})
    registry = CheckpointRegistry(tmp_path)
    snapshot = save(
        registry, agent, 42.0, episode=5, loop_state={"episode": 5}, extra={"env": "CartPole-v1"}
    )
    path = Path(snapshot.path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "optix-checkpoint/1"
    assert manifest["kind"] == "best"
    assert manifest["snapshot_id"] == path.name == snapshot.snapshot_id
    assert manifest["score"] == 42.0
    assert manifest["episode_id"] == 5
    assert manifest["eval_metrics"]["primary_score"] == 42.0
    assert manifest["hyperparams"]["params"] == {"learning_rate": 3e-4, "gamma": 0.99}
    assert manifest["loop_state"] == {"episode": 5}
    assert manifest["extra"] == {"env": "CartPole-v1"}
    assert manifest["agent_class"].endswith(":ArrayAgent")
    for name in ("optix-core", "numpy", "gymnasium"):
        assert manifest["versions"][name]
    assert manifest["versions"]["numpy"] == np.__version__
    assert set(manifest["files"]) == {"agent/w.npy"}
    digest = hashlib.sha256((path / "agent" / "w.npy").read_bytes()).hexdigest()
    assert manifest["files"]["agent/w.npy"] == digest
    assert registry.verify(path) == manifest
    assert snapshot.hyperparams.params == {"learning_rate": 3e-4, "gamma": 0.99}


def test_non_finite_score_is_stored_as_null(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    snapshot = save(registry, ArrayAgent(), float("nan"))
    manifest = json.loads((Path(snapshot.path) / "manifest.json").read_text())
    assert manifest["score"] is None
    assert snapshot.score == -np.inf


def test_save_leaves_no_temporary_directory(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    save(registry, ArrayAgent(), 1.0)
    save(registry, ArrayAgent(), 2.0, kind="latest")
    assert not list(tmp_path.glob(".tmp-*"))


def test_failed_save_leaves_nothing_behind_and_keeps_older_snapshots(tmp_path):
    class Failing(ArrayAgent):
        def save_weights(self, path):
            Path(path).mkdir(parents=True)
            (Path(path) / "half").write_bytes(b"x")
            raise OSError("disk full")

    registry = CheckpointRegistry(tmp_path)
    first = save(registry, ArrayAgent([1.0]), 1.0)
    with pytest.raises(OSError, match="disk full"):
        save(registry, Failing(), 2.0)
    assert not list(tmp_path.glob(".tmp-*"))
    assert [s.snapshot_id for s in registry.snapshots()] == [first.snapshot_id]


def test_restore_on_empty_directory_returns_none(tmp_path):
    registry = CheckpointRegistry(tmp_path / "new")
    assert (tmp_path / "new").is_dir()
    assert not registry.has_snapshots()
    assert registry.restore(ArrayAgent()) is None


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_snapshots"):
        CheckpointRegistry(tmp_path, max_snapshots=0)
    with pytest.raises(ValueError, match="kind"):
        save(CheckpointRegistry(tmp_path), ArrayAgent(), 1.0, kind="worst")


# ---- pruning ----------------------------------------------------------------


def test_best_n_pruning_keeps_the_max_snapshots_best(tmp_path):
    registry = CheckpointRegistry(tmp_path, max_snapshots=3)
    for episode, score in enumerate([5.0, 1.0, 7.0, 3.0, 9.0, 2.0, 8.0], start=1):
        save(registry, ArrayAgent([score]), score, episode=episode)
    kept = registry.snapshots("best")
    assert [s.score for s in kept] == [9.0, 8.0, 7.0]
    assert [s.episode_id for s in kept] == [5, 7, 3]
    assert len(snapshot_dirs(tmp_path, "best-")) == 3
    agent = ArrayAgent()
    registry.restore(agent)
    np.testing.assert_array_equal(agent.weights, [9.0])


def test_equal_scores_prefer_the_newest(tmp_path):
    registry = CheckpointRegistry(tmp_path, max_snapshots=2)
    for episode in (1, 2, 3):
        save(registry, ArrayAgent([float(episode)]), 10.0, episode=episode)
    assert [s.episode_id for s in registry.snapshots()] == [3, 2]


def test_latest_keeps_only_one_and_leaves_best_alone(tmp_path):
    registry = CheckpointRegistry(tmp_path, max_snapshots=2)
    save(registry, ArrayAgent([1.0]), 1.0, episode=1)
    for episode in (2, 3, 4):
        save(registry, ArrayAgent([float(episode)]), -100.0, kind="latest", episode=episode)
    latest = registry.snapshots("latest")
    assert [s.episode_id for s in latest] == [4]
    assert len(snapshot_dirs(tmp_path, "latest-")) == 1
    assert [s.episode_id for s in registry.snapshots("best")] == [1]
    agent = ArrayAgent()
    registry.restore(agent, kind="latest")
    np.testing.assert_array_equal(agent.weights, [4.0])
    registry.restore(agent, kind="best")
    np.testing.assert_array_equal(agent.weights, [1.0])


# ---- corruption ---------------------------------------------------------------


def test_altered_file_is_refused_and_restore_falls_back(tmp_path, caplog):
    registry = CheckpointRegistry(tmp_path)
    good = save(registry, ArrayAgent([1.0, 1.0]), 10.0, episode=1)
    bad = save(registry, ArrayAgent([2.0, 2.0]), 20.0, episode=2)
    weights = Path(bad.path) / "agent" / "w.npy"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip the last byte of the second float
    weights.write_bytes(bytes(data))

    with pytest.raises(CorruptCheckpointError, match="sha256"):
        registry.verify(bad.path)
    agent = ArrayAgent([0.0, 0.0])
    with pytest.raises(CorruptCheckpointError):
        registry.load(agent, bad.path)
    np.testing.assert_array_equal(agent.weights, [0.0, 0.0])  # nothing half-loaded

    manifest = registry.restore(agent)
    assert manifest is not None
    assert manifest["snapshot_id"] == good.snapshot_id
    np.testing.assert_array_equal(agent.weights, [1.0, 1.0])
    assert bad.snapshot_id in caplog.text


def test_missing_file_and_broken_manifest_are_refused(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    a = save(registry, ArrayAgent([1.0]), 1.0)
    b = save(registry, ArrayAgent([2.0]), 2.0)
    c = save(registry, ArrayAgent([3.0]), 3.0)
    (Path(c.path) / "agent" / "w.npy").unlink()
    (Path(b.path) / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="missing"):
        registry.verify(c.path)
    with pytest.raises(CorruptCheckpointError, match="JSON"):
        registry.verify(b.path)
    agent = ArrayAgent()
    assert registry.restore(agent)["snapshot_id"] == a.snapshot_id
    np.testing.assert_array_equal(agent.weights, [1.0])


def test_a_directory_without_manifest_is_not_a_checkpoint(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    with pytest.raises(CheckpointError, match="manifest"):
        registry.verify(tmp_path)


def test_all_corrupt_restores_nothing(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    snapshot = save(registry, ArrayAgent([5.0]), 5.0)
    (Path(snapshot.path) / "agent" / "w.npy").write_bytes(b"tampered")
    agent = ArrayAgent([0.0])
    assert registry.restore(agent) is None
    np.testing.assert_array_equal(agent.weights, [0.0])


# ---- a crash in the middle of a write -----------------------------------------

CRASHING_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from optix_core.algorithms.cem import CEMAgent
    from optix_core.checkpoints import CheckpointRegistry
    from optix_core.types import EvalMetrics
    import gymnasium as gym

    directory, ready = Path(sys.argv[1]), Path(sys.argv[2])

    class BlockingCEM(CEMAgent):
        block = False

        def save_weights(self, path):
            super().save_weights(path)  # the new weights are on disk, half a snapshot
            if self.block:
                ready.write_text("writing")
                time.sleep(120)

    space = gym.spaces.Box(-1.0, 1.0, shape=(4,))
    agent = BlockingCEM(space, gym.spaces.Discrete(2), seed=0)
    agent.mean = np.arange(agent.mean.size, dtype=np.float64)
    registry = CheckpointRegistry(directory)

    def save(score):
        registry.save(agent, kind="best", episode_id=int(score),
                      eval_metrics=EvalMetrics(score), score=score,
                      hyperparams=agent.get_hyperparams())

    save(1.0)
    agent.mean = -agent.mean - 100.0
    agent.block = True
    save(2.0)
    """
)


def test_sigkill_during_a_write_leaves_the_previous_snapshot_loadable(tmp_path):
    import gymnasium as gym

    directory, ready = tmp_path / "ckpt", tmp_path / "ready"
    script = tmp_path / "writer.py"
    script.write_text(CRASHING_WRITER)
    process = subprocess.Popen(
        [sys.executable, str(script), str(directory), str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"writer exited early: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("writer never reached the second save")
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # The kill left a half-written snapshot in a temporary directory, and no
    # second snapshot.
    leftovers = list(directory.glob(".tmp-*"))
    assert len(leftovers) == 1
    assert (leftovers[0] / "agent" / "cem.npz").exists()
    assert not (leftovers[0] / "manifest.json").exists()
    assert snapshot_dirs(directory, "best-") == ["best-000001"]

    registry = CheckpointRegistry(directory)
    assert not list(directory.glob(".tmp-*"))  # cleaned on open
    space = gym.spaces.Box(-1.0, 1.0, shape=(4,))
    agent = CEMAgent(space, gym.spaces.Discrete(2), seed=3)
    manifest = registry.restore(agent)
    assert manifest is not None
    assert manifest["score"] == 1.0
    np.testing.assert_array_equal(agent.mean, np.arange(agent.mean.size, dtype=np.float64))
    assert [s.score for s in registry.snapshots()] == [1.0]
