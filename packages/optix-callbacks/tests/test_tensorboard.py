"""TensorBoardCallback on real short runs, read back with TensorBoard's own
EventAccumulator."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from numbers import Real
from pathlib import Path
from typing import Any

import pytest
from conftest import read_scalars

from optix_callbacks.tensorboard import TensorBoardCallback
from optix_core import LoopCallback
from optix_core.types import EvalMetrics, HyperparamSet

TESTS = Path(__file__).parent


class Recorder(LoopCallback):
    """What the loop handed its callbacks, keyed by env steps."""

    def __init__(self) -> None:
        self.raw: dict[int, float] = {}
        self.hyperparams: dict[int, dict[str, Any]] = {}

    def on_loop_start(self, loop: Any) -> None:
        self.loop = loop

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        self.raw[int(metrics.metrics["env_steps"])] = metrics.primary_score

    def on_hyperparam_update(self, old: HyperparamSet, new: HyperparamSet) -> None:
        self.hyperparams[self.loop.pipeline.env_steps] = dict(new.params)


class FileWatcher(LoopCallback):
    """Sizes of the event files after each evaluation: what a live TensorBoard sees."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.sizes: list[int] = []

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        self.sizes.append(sum(f.stat().st_size for f in self.log_dir.glob("events.*")))


def open_files(directory: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    links = (os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink())
    return [link for link in links if link.startswith(str(directory))]


def test_scores_hyperparams_and_state_at_env_steps(short_run: Any, tmp_path: Path) -> None:
    recorder = Recorder()
    tensorboard, watcher = TensorBoardCallback(log_dir=tmp_path), FileWatcher(tmp_path)
    loop, report = short_run([recorder, tensorboard, watcher], windows=8)
    assert watcher.sizes == sorted(set(watcher.sizes)), "not flushed at each evaluation"
    if Path("/proc/self/fd").exists():
        assert open_files(tmp_path) == [], "the event file is still open after the run"

    scalars = read_scalars(tmp_path)
    expected = {"score/raw", "score/smoothed", "score/best", "score/selection", "loop/interval"}
    expected |= {"loop/state", "loop/window", "loop/rollbacks", "checkpoint/score"}
    expected |= {"final/env_steps", "final/best_score"}
    params = loop.agent.get_hyperparams().params
    numeric = {k for k, v in params.items() if isinstance(v, Real) and not isinstance(v, bool)}
    expected |= {f"hyperparams/{name}" for name in numeric}
    assert expected <= set(scalars)
    assert "score/val" not in scalars  # no held-out pipeline in this run

    # the right values at the right steps: env steps, not windows
    assert len(recorder.raw) >= 3
    raw = dict(scalars["score/raw"])
    assert raw.keys() == recorder.raw.keys()
    for step, score in recorder.raw.items():
        assert raw[step] == pytest.approx(score, rel=1e-6)
    assert {value for _, value in scalars["loop/state"]} <= {0.0, 1.0, 2.0}
    assert scalars["final/env_steps"] == [(report.env_steps, report.env_steps)]

    assert recorder.hyperparams, "the tuner changed nothing: the hook went untested"
    for step, params in recorder.hyperparams.items():
        for name in numeric:
            logged = [v for s, v in scalars[f"hyperparams/{name}"] if s == step]
            assert logged == [pytest.approx(params[name], rel=1e-6)], (name, step)


def test_writes_without_importing_tensorflow(tmp_path: Path) -> None:
    # a fresh interpreter: TensorFlow may be imported in this one by other tests
    script = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from conftest import run_loop
from optix_callbacks.tensorboard import TensorBoardCallback
assert "tensorboard" not in sys.modules, "imported at module import"
run_loop([TensorBoardCallback(log_dir={str(tmp_path)!r})], windows=2)
assert "tensorflow" not in sys.modules, "tensorflow was imported"
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_run_dir_default(short_run: Any, tmp_path: Path) -> None:
    assert TensorBoardCallback().log_dir == Path("runs/tensorboard")
    callback = TensorBoardCallback(run_dir=tmp_path)
    assert callback.log_dir == tmp_path / "tensorboard"
    short_run([callback], windows=2)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert "score/raw" in read_scalars(tmp_path / "tensorboard")


def test_resumed_run_appends_to_the_same_curves(short_run: Any, tmp_path: Path) -> None:
    log_dir, checkpoints = tmp_path / "tb", tmp_path / "checkpoints"
    short_run([TensorBoardCallback(log_dir=log_dir)], windows=4, checkpoint_dir=checkpoints)
    first = [step for step, _ in read_scalars(log_dir)["score/raw"]]
    short_run([TensorBoardCallback(log_dir)], windows=8, checkpoint_dir=checkpoints, resume=True)

    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 2
    steps = [step for step, _ in read_scalars(log_dir)["score/raw"]]
    assert set(first) <= set(steps)
    assert max(steps) > max(first)
    assert steps == sorted(set(steps)), "env steps restarted or repeated on resume"


def test_missing_tensorboard_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ModuleNotFoundError, match=r"optix-callbacks\[tensorboard\]"):
        TensorBoardCallback()


def test_non_finite_values_are_skipped(short_run: Any, tmp_path: Path) -> None:
    callback = TensorBoardCallback(log_dir=tmp_path)
    loop, _ = short_run([callback], windows=1)
    callback.on_loop_start(loop)  # reopen: the run closed its writer
    metrics = EvalMetrics(primary_score=math.nan, metrics={"env_steps": 10**6})
    callback.on_episode_end(99, metrics)
    callback.close()
    assert all(step < 10**6 for step, _ in read_scalars(tmp_path).get("score/raw", []))
    assert (10**6, 99.0) in read_scalars(tmp_path)["loop/window"]
