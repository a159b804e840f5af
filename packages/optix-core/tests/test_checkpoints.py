"""CheckpointRegistry: atomic, verified, pruned snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from optix_core import checkpoints
from optix_core.agent import BaseAgent
from optix_core.algorithms.cem import CEMAgent
from optix_core.checkpoints import (
    CheckpointError,
    CheckpointLockedError,
    CheckpointRegistry,
    CorruptCheckpointError,
)
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


def canonical_sha256(manifest: dict) -> str:
    """The manifest's own hash, computed the way DESIGN.md and the docstring say."""
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(rest, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
    assert manifest["manifest_sha256"] == canonical_sha256(manifest)
    assert registry.verify(path) == manifest
    assert snapshot.hyperparams.params == {"learning_rate": 3e-4, "gamma": 0.99}


def test_non_finite_score_is_stored_as_null(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    snapshot = save(registry, ArrayAgent(), float("nan"))
    manifest = json.loads((Path(snapshot.path) / "manifest.json").read_text())
    assert manifest["score"] is None
    assert snapshot.score == -np.inf


def test_non_finite_numbers_anywhere_in_a_save_are_stored_as_null(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    snapshot = registry.save(
        ArrayAgent(),
        kind="latest",
        episode_id=3,
        eval_metrics=EvalMetrics(1.0, metrics={"per_env": np.array([2.0, np.inf])}),
        score=1.0,
        hyperparams=HyperparamSet({"learning_rate": 0.1}),
        loop_state={"scheduler": {"raw": [1.0, float("nan")]}, "best": np.float32("-inf")},
        extra={"history": ({"score": float("inf")}, 2.5)},
    )
    manifest = registry.verify(snapshot.path)
    assert manifest["loop_state"] == {"scheduler": {"raw": [1.0, None]}, "best": None}
    assert manifest["extra"] == {"history": [{"score": None}, 2.5]}
    assert manifest["eval_metrics"]["metrics"] == {"per_env": [2.0, None]}
    assert registry.snapshots("latest")[0].eval_metrics.metrics == {"per_env": [2.0, None]}


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


def test_best_snapshots_are_the_loops_choices_newest_first_and_the_newest_n_are_kept(tmp_path):
    """The selection policy decides what best means (a tie may go to a later,
    lower-scoring policy): the registry keeps its choices in order."""
    registry = CheckpointRegistry(tmp_path, max_snapshots=3)
    for episode, score in enumerate([5.0, 7.0, 9.0, 8.5, 8.8], start=1):
        save(registry, ArrayAgent([score]), score, episode=episode)
    kept = registry.snapshots("best")
    assert [s.episode_id for s in kept] == [5, 4, 3]
    assert len(snapshot_dirs(tmp_path, "best-")) == 3
    agent = ArrayAgent()
    registry.restore(agent)
    np.testing.assert_array_equal(agent.weights, [8.8])  # the current best, not the top score


def test_latest_keeps_the_newest_two_and_leaves_best_alone(tmp_path):
    registry = CheckpointRegistry(tmp_path, max_snapshots=2)
    save(registry, ArrayAgent([1.0]), 1.0, episode=1)
    for episode in (2, 3, 4):
        save(registry, ArrayAgent([float(episode)]), -100.0, kind="latest", episode=episode)
    latest = registry.snapshots("latest")
    assert [s.episode_id for s in latest] == [4, 3]
    assert len(snapshot_dirs(tmp_path, "latest-")) == 2
    assert [s.episode_id for s in registry.snapshots("best")] == [1]
    agent = ArrayAgent()
    registry.restore(agent, kind="latest")
    np.testing.assert_array_equal(agent.weights, [4.0])
    registry.restore(agent, kind="best")
    np.testing.assert_array_equal(agent.weights, [1.0])


def test_a_corrupt_latest_falls_back_to_the_previous_latest(tmp_path, caplog):
    registry = CheckpointRegistry(tmp_path)
    for episode in (1, 2, 3):
        save(registry, ArrayAgent([float(episode)]), 0.0, kind="latest", episode=episode)
    newest = registry.snapshots("latest")[0]
    (Path(newest.path) / "agent" / "w.npy").write_bytes(b"torn")
    agent = ArrayAgent([0.0])
    manifest = registry.restore(agent, kind="latest")
    assert manifest is not None
    assert manifest["episode_id"] == 2
    np.testing.assert_array_equal(agent.weights, [2.0])
    assert newest.snapshot_id in caplog.text


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


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: m.update(score=1e9), id="score"),
        pytest.param(lambda m: m["hyperparams"]["params"].update(learning_rate=1.0), id="hp"),
        pytest.param(lambda m: m["loop_state"].update(episode=0), id="loop_state"),
    ],
)
def test_an_edited_manifest_is_refused_and_restore_falls_back(tmp_path, caplog, edit):
    registry = CheckpointRegistry(tmp_path)
    good = save(registry, ArrayAgent([1.0]), 10.0, episode=1, loop_state={"episode": 1})
    bad = save(registry, ArrayAgent([2.0]), 20.0, episode=2, loop_state={"episode": 2})
    file = Path(bad.path) / "manifest.json"
    manifest = json.loads(file.read_text())
    edit(manifest)
    file.write_text(json.dumps(manifest, indent=2))  # manifest_sha256 left as it was

    with pytest.raises(CorruptCheckpointError, match="manifest.json") as error:
        registry.verify(bad.path)
    assert str(file) in str(error.value)
    agent = ArrayAgent([0.0])
    assert registry.restore(agent)["snapshot_id"] == good.snapshot_id
    np.testing.assert_array_equal(agent.weights, [1.0])
    assert bad.snapshot_id in caplog.text


def test_a_manifest_edited_to_hold_nan_is_refused(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    good = save(registry, ArrayAgent([1.0]), 1.0)
    bad = save(registry, ArrayAgent([2.0]), 2.0)
    file = Path(bad.path) / "manifest.json"
    file.write_text(file.read_text().replace('"score": 2.0', '"score": NaN'))
    with pytest.raises(CorruptCheckpointError, match="manifest_sha256"):
        registry.verify(bad.path)
    assert [s.snapshot_id for s in registry.snapshots()] == [bad.snapshot_id, good.snapshot_id]
    assert registry.restore(ArrayAgent())["snapshot_id"] == good.snapshot_id  # falls back


def test_a_manifest_without_its_own_hash_is_refused(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    snapshot = save(registry, ArrayAgent([1.0]), 1.0)
    file = Path(snapshot.path) / "manifest.json"
    manifest = json.loads(file.read_text())
    del manifest["manifest_sha256"]
    file.write_text(json.dumps(manifest))
    with pytest.raises(CorruptCheckpointError, match="manifest_sha256"):
        registry.verify(snapshot.path)
    assert registry.restore(ArrayAgent()) is None


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


# ---- readers next to a writer ---------------------------------------------------


def test_a_reader_never_deletes_a_writers_temporary_directory(tmp_path):
    writer = CheckpointRegistry(tmp_path)
    writer.acquire()
    in_progress = tmp_path / ".tmp-best-000002-0123abcd"
    (in_progress / "agent").mkdir(parents=True)
    reader = CheckpointRegistry(tmp_path)
    assert in_progress.is_dir()
    assert reader.restore(ArrayAgent()) is None
    assert reader.snapshots() == []
    assert in_progress.is_dir()
    writer.release()


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    first = CheckpointRegistry(tmp_path)
    first.acquire()
    leftover = tmp_path / ".tmp-best-000001-deadbeef"
    leftover.mkdir()
    second = CheckpointRegistry(tmp_path)
    with pytest.raises(CheckpointLockedError) as error:
        second.acquire()
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    assert f"pid {os.getpid()}" in message
    assert isinstance(error.value, CheckpointError)
    assert leftover.is_dir()  # a refused writer deletes nothing either

    first.release()
    first.release()  # idempotent
    second.acquire()
    assert not leftover.exists()  # the lock holder cleans up stale writes
    second.release()


def test_the_registry_is_a_context_manager_holding_the_lock(tmp_path):
    with CheckpointRegistry(tmp_path) as registry:
        save(registry, ArrayAgent([1.0]), 1.0)
        with pytest.raises(CheckpointLockedError):
            CheckpointRegistry(tmp_path).acquire()
    with CheckpointRegistry(tmp_path) as again:
        assert [s.score for s in again.snapshots()] == [1.0]


def test_restore_skips_a_snapshot_pruned_while_it_is_read(tmp_path, caplog):
    class PrunedWhileLoading(ArrayAgent):
        """The writer prunes the snapshot the moment the reader opens it."""

        def load_weights(self, path):
            if "best-000002" in path:
                shutil.rmtree(Path(path).parent)
            super().load_weights(path)

    registry = CheckpointRegistry(tmp_path)
    save(registry, ArrayAgent([1.0]), 1.0)
    pruned = save(registry, ArrayAgent([2.0]), 2.0)
    agent = PrunedWhileLoading([0.0])
    manifest = registry.restore(agent)
    assert manifest is not None and manifest["score"] == 1.0
    np.testing.assert_array_equal(agent.weights, [1.0])
    assert pruned.snapshot_id in caplog.text


def test_restore_skips_a_snapshot_pruned_while_it_is_verified(tmp_path, monkeypatch, caplog):
    registry = CheckpointRegistry(tmp_path)
    save(registry, ArrayAgent([1.0]), 1.0)
    pruned = save(registry, ArrayAgent([2.0]), 2.0)
    original = checkpoints._sha256

    def prune_then_hash(path):
        if pruned.snapshot_id in str(path):
            shutil.rmtree(pruned.path, ignore_errors=True)
        return original(path)

    monkeypatch.setattr(checkpoints, "_sha256", prune_then_hash)
    agent = ArrayAgent([0.0])
    assert registry.restore(agent)["score"] == 1.0
    np.testing.assert_array_equal(agent.weights, [1.0])
    assert pruned.snapshot_id in caplog.text


def test_reading_a_checkpoint_directory_that_vanished_finds_nothing(tmp_path):
    registry = CheckpointRegistry(tmp_path / "ckpt")
    save(registry, ArrayAgent([1.0]), 1.0)
    shutil.rmtree(tmp_path / "ckpt")
    assert registry.snapshots() == []
    assert registry.snapshots("latest") == []
    assert not registry.has_snapshots()
    assert registry.restore(ArrayAgent()) is None


def test_stray_entries_are_not_snapshots(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    save(registry, ArrayAgent([1.0]), 1.0)
    (tmp_path / "best-notes").mkdir()
    (tmp_path / "best-notes" / "manifest.json").write_text("{}")
    (tmp_path / "latest-000099").write_text("a file, not a snapshot")
    assert [s.score for s in registry.snapshots()] == [1.0]
    assert save(registry, ArrayAgent([2.0]), 2.0).snapshot_id == "best-000002"


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
    registry.acquire()

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
        # `optix eval` on the run while it trains: it reads, deletes nothing, and
        # cannot become a second writer.
        reader = CheckpointRegistry(directory)
        assert len(list(directory.glob(".tmp-*"))) == 1
        assert [s.score for s in reader.snapshots()] == [1.0]
        with pytest.raises(CheckpointLockedError, match=f"pid {process.pid}"):
            reader.acquire()
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
    assert len(list(directory.glob(".tmp-*"))) == 1  # a reader deletes nothing
    registry.acquire()  # the dead writer's lock went with it
    assert not list(directory.glob(".tmp-*"))  # cleaned by the new writer
    space = gym.spaces.Box(-1.0, 1.0, shape=(4,))
    agent = CEMAgent(space, gym.spaces.Discrete(2), seed=3)
    manifest = registry.restore(agent)
    assert manifest is not None
    assert manifest["score"] == 1.0
    np.testing.assert_array_equal(agent.mean, np.arange(agent.mean.size, dtype=np.float64))
    assert [s.score for s in registry.snapshots()] == [1.0]
    registry.release()


def test_snapshots_that_are_not_durable_never_push_out_the_last_durable_latest(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    agent = ArrayAgent()
    ids = [
        save(registry, agent, 0.0, kind="latest", episode=i, durable=i == 0).snapshot_id
        for i in range(5)
    ]
    assert snapshot_dirs(tmp_path, "latest-") == sorted([ids[0], ids[3], ids[4]])
    save(registry, agent, 0.0, kind="latest", episode=5)  # durable: the old one may go
    assert len(snapshot_dirs(tmp_path, "latest-")) == 2
