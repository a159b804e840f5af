"""Short real runs of the loop for the callback tests: the framework-free ``cem``
agent on CartPole-v1, a few windows, with hyperparameters tuned online so that
every hook (improvements, hyperparameter updates) fires."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from optix_core import RLOptimizer, VectorBatchPipeline, make_agent
from optix_core.optimizers import SPSAOptimizer
from optix_core.report import LoopReport


def run_loop(
    callbacks: list[Any],
    windows: int = 8,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    seed: int = 0,
    **loop_options: Any,
) -> tuple[RLOptimizer, LoopReport]:
    agent = make_agent("cem", "CartPole-v1", seed=seed)
    loop = RLOptimizer(
        agent,
        VectorBatchPipeline(env_id="CartPole-v1", n_envs=4, window_size=200, seed=seed),
        optimizer=SPSAOptimizer.from_search_space(agent.search_space, seed=seed),
        tuning_episodes=1,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        max_episodes=windows,
        callbacks=callbacks,
        **loop_options,
    )
    report = loop.run()
    return loop, report


@pytest.fixture(autouse=True)
def _tensorboard_without_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # TensorBoard's reader imports TensorFlow when it is installed (15 s here);
    # "tensorboard.compat.notf" is its switch to the TensorFlow-free stub a
    # torch-only install gets. No effect if TensorBoard already chose.
    monkeypatch.setitem(sys.modules, "tensorboard.compat.notf", types.ModuleType("notf"))


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def short_run() -> Callable[..., tuple[RLOptimizer, LoopReport]]:
    return run_loop
