"""The loop every worker of a sweep runs, in the caller's process or a spawned one.

A worker starts trials until the study holds ``n_trials`` that ran to an end
(COMPLETE, PRUNED, or FAIL because the objective raised). A trial failed
because its worker died does not count: the budget is spent on
configurations that were actually measured. Workers share nothing but the
storage, so workers on other machines that run the same study share the
budget too. Two workers that start a trial at the same instant can overshoot
the budget by at most ``n_workers - 1`` trials.
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optix_core.search_space import SearchSpace, sample_params
from optix_core.trials.context import ERROR, WORKER, TrialContext
from optix_core.trials.storage import StorageSpec

Objective = Callable[[TrialContext], float]
StudyCallback = Callable[[optuna.Study, FrozenTrial], None]
SAMPLERS = ("tpe", "random")


@dataclass(frozen=True)
class SamplerConfig:
    """TPE (or random search, the baseline TPE is measured against), seeded per worker.

    Worker ``i`` seeds its sampler with ``seed + i``: workers seeded alike would
    propose the same configurations side by side.
    """

    kind: str = "tpe"
    seed: int | None = None
    n_startup_trials: int = 10

    def build(self, worker_index: int) -> optuna.samplers.BaseSampler:
        seed = None if self.seed is None else self.seed + worker_index
        if self.kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)


@dataclass(frozen=True)
class PrunerConfig:
    """Optuna's MedianPruner, with its warm-up in the objective's own steps (env steps).

    A trial is compared with the completed trials' values at the same step,
    once ``startup_trials`` trials have completed and it has reached
    ``warmup_steps``; ``enabled=False`` never prunes.
    """

    warmup_steps: int = 0
    startup_trials: int = 5
    enabled: bool = True

    def build(self) -> optuna.pruners.BasePruner:
        if not self.enabled:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(
            n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_steps
        )


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs; it travels by pickle to spawned workers."""

    objective: Objective
    space: SearchSpace
    n_trials: int
    storage: StorageSpec
    study_name: str
    trials_dir: Path
    sampler: SamplerConfig
    pruner: PrunerConfig
    optuna_verbosity: int

    def load_study(self, storage: Any, worker_index: int) -> optuna.Study:
        return optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler.build(worker_index),
            pruner=self.pruner.build(),
        )


@dataclass(frozen=True)
class Budget:
    done: int  # trials that ran to an end
    running: int
    waiting: int  # enqueued, not started


def count_trials(study: optuna.Study) -> Budget:
    trials = study.get_trials(deepcopy=False)
    return Budget(
        done=sum(_ran_to_an_end(t) for t in trials),
        running=sum(t.state is TrialState.RUNNING for t in trials),
        waiting=sum(t.state is TrialState.WAITING for t in trials),
    )


def _ran_to_an_end(trial: FrozenTrial) -> bool:
    if trial.state is TrialState.FAIL:
        return ERROR in trial.user_attrs  # the objective raised; not a lost worker
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


def run_trials(
    job: WorkerJob, study: optuna.Study, callbacks: Sequence[StudyCallback] = ()
) -> None:
    """Start trials until the study's budget is spent.

    When the rest of the budget is running in other workers, a worker on a
    heartbeat storage waits, failing stale trials as it goes, and takes over
    the budget of any that died; without a heartbeat it leaves.
    """
    objective = _OptunaObjective(job)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a no-op without heartbeats
        budget = count_trials(study)
        if budget.done >= job.n_trials:
            return
        if budget.waiting or budget.done + budget.running < job.n_trials:
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
        elif job.storage.heartbeat:
            time.sleep(job.storage.heartbeat_interval)
        else:
            return


def worker_main(job: WorkerJob, worker_index: int) -> None:
    """Entry point of a spawned worker process."""
    optuna.logging.set_verbosity(job.optuna_verbosity)
    run_trials(job, job.load_study(job.storage.open(), worker_index))


def worker_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


class _OptunaObjective:
    """Samples the configuration, runs the objective, and records what Optuna does not:
    the worker, the env steps, and why a trial failed."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, worker_id())
        params = sample_params(trial, self.job.space)
        context = TrialContext(trial, params, self.job.trials_dir / f"trial-{trial.number:04d}")
        try:
            value = float(self.job.objective(context))
            if not math.isfinite(value):
                raise ValueError(f"the objective returned {value}")
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(ERROR, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            context.save_env_steps()
        return value
