"""The loop every worker of a sweep runs, in the caller's process or a spawned one.

A worker starts trials until the study holds ``n_trials`` that ran to an end
(COMPLETE, PRUNED, or FAIL because the objective raised). A trial failed
because its worker died or was stopped does not count: the budget is spent on
configurations that were actually measured. Workers share nothing but the
storage, so workers on other machines that run the same study share the
budget too. A trial that two workers racing each other start past the
budget is failed at once, before it samples anything, with the ``surplus``
user attribute: the budget is met exactly.

A RUNNING trial whose worker on this machine is gone (a sweep killed with
``kill -9``, a lost process) is marked FAIL by the next worker that looks,
so a continued sweep never counts it as running; on a database storage,
trials of workers on other machines are failed by their missing heartbeat.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optix_core.search_space import SearchSpace, sample_params
from optix_core.trials.context import ERROR, STOPPED, SURPLUS, WORKER, TrialContext
from optix_core.trials.stopping import Interrupted, die_of, stop_on_signals
from optix_core.trials.storage import StorageSpec
from optix_core.trials.threads import limit_threads

Objective = Callable[[TrialContext], float]
StudyCallback = Callable[[optuna.Study, FrozenTrial], None]
SAMPLERS = ("tpe", "random")
PAST_TRIALS_STRIDE = 1_000


@dataclass(frozen=True)
class SamplerConfig:
    """TPE (or random search, the baseline TPE is measured against), seeded per worker.

    Worker ``i`` seeds its sampler with ``seed + i``: workers seeded alike would
    propose the same configurations side by side. A sampler opened on a study
    that already holds finished trials (a resumed sweep) adds
    ``PAST_TRIALS_STRIDE`` per trial, or it would replay the random start-up draws of the first session.
    """

    kind: str = "tpe"
    seed: int | None = None
    n_startup_trials: int = 10
    constant_liar: bool = False  # workers side by side: running trials count as bad ones

    def build(self, worker_index: int, past_trials: int = 0) -> optuna.samplers.BaseSampler:
        seed = None
        if self.seed is not None:
            seed = self.seed + worker_index + PAST_TRIALS_STRIDE * past_trials
        if self.kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():  # constant_liar is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=self.n_startup_trials,
                constant_liar=self.constant_liar,
            )


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
    deadline: float | None = None  # time.time() after which no trial starts (--timeout)
    threads: int | None = None  # each worker's framework threads; None: the defaults
    progress_interval: float | None = None  # seconds between a running trial's lines

    def load_study(self, storage: Any, worker_index: int) -> optuna.Study:
        past = finished_trials(optuna.load_study(study_name=self.study_name, storage=storage))
        return optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler.build(worker_index, past),
            pruner=self.pruner.build(),
        )


def finished_trials(study: optuna.Study) -> int:
    """Trials of earlier sessions: they seed a resumed sweep's samplers apart."""
    states = study.get_trials(deepcopy=False)
    return sum(t.state.is_finished() for t in states)


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
    """Start trials until the study's budget is spent, or its deadline has passed.

    When the rest of the budget is running in other workers, a worker on a
    heartbeat storage waits, failing stale trials as it goes, and takes over
    the budget of any that died; without a heartbeat it leaves. On
    ``Interrupted`` the worker's running trial is marked FAIL (``stopped``)
    before the exception goes on.
    """
    objective = _OptunaObjective(job)
    _quiet_surplus_failures()
    limit_threads(job.threads)
    try:
        while job.deadline is None or time.time() < job.deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a no-op without heartbeats
            fail_orphaned_trials(study)
            budget = count_trials(study)
            if budget.done >= job.n_trials:
                return
            if budget.waiting or budget.done + budget.running < job.n_trials:
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
            elif job.storage.heartbeat:
                time.sleep(job.storage.heartbeat_interval)
            else:
                return
    except Interrupted as exc:
        exc.failed += fail_trials_of(study, worker_id(), f"stopped by {exc.signame}")
        raise


def worker_main(job: WorkerJob, worker_index: int) -> None:
    """Entry point of a spawned worker process.

    SIGTERM (from the sweep stopping, or from anyone) fails the running trial
    and ends the worker as SIGTERM would; so does the death of the process
    that started it. SIGINT is left to that process (workers start with it
    ignored).
    """
    try:
        with stop_on_signals((signal.SIGTERM,)):
            _watch_parent()
            optuna.logging.set_verbosity(job.optuna_verbosity)
            run_trials(job, job.load_study(job.storage.open(), worker_index))
    except Interrupted as exc:
        die_of(exc.signum)


def _watch_parent() -> None:
    """SIGTERM to this worker when the process that started it dies (kill -9 included)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="optix-parent-watch", daemon=True).start()


def worker_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def fail_trials_of(study: optuna.Study, owner: str, reason: str) -> list[int]:
    """Mark the RUNNING trials of worker ``owner`` ("host:pid") FAIL, saying why."""
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(WORKER) == owner:
            _fail(study, trial, reason)
            lost.append(trial.number)
    return lost


def _fail(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    # The pool and a worker may fail the same orphan at once; the second finds it
    # finished, even between its two writes (UpdateFinishedTrialError is a RuntimeError).
    try:
        study._storage.set_trial_user_attr(trial._trial_id, STOPPED, reason)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    except RuntimeError:
        return


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """FAIL the RUNNING trials whose worker, a process on this machine, is gone."""
    host = socket.gethostname()
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = str(trial.user_attrs.get(WORKER, "")).rpartition(":")
        if owner_host != host or not pid.isdigit():
            continue  # another machine's (heartbeats find those), or not yet claimed
        started = trial.datetime_start.timestamp() if trial.datetime_start else None
        if not _process_alive(int(pid), started):
            _fail(study, trial, "its worker process is gone")
            lost.append(trial.number)
    return lost


def _process_alive(pid: int, since: float | None) -> bool:
    """Whether process ``pid`` lives and is the one that was there at ``since`` (Linux
    tells a reused pid by the process's start time; elsewhere a live pid is enough)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):  # a zombie, waiting to be reaped: dead
            return False
        if since is None:
            return True
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started <= since + 2.0  # a process younger than the trial got a reused pid
    except (OSError, StopIteration, IndexError, ValueError):
        return True


class _SurplusTrial(Exception):
    """A trial started past the budget by a worker racing another (never shown)."""


class _DropSurplusLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _SurplusTrial.__name__ not in record.getMessage()


def _quiet_surplus_failures() -> None:
    log = logging.getLogger("optuna.study._optimize")  # where Optuna logs a failed trial
    if not any(isinstance(f, _DropSurplusLogs) for f in log.filters):
        log.addFilter(_DropSurplusLogs())


def _is_surplus(trial: optuna.Trial, n_trials: int) -> bool:
    """More trials ahead of this one (by number) are done, running or waiting than
    the budget allows: another worker took the last place first."""
    ahead = 0
    for t in trial.study.get_trials(deepcopy=False):
        if t.number < trial.number and (
            _ran_to_an_end(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)
        ):
            ahead += 1
    return ahead >= n_trials


class _OptunaObjective:
    """Samples the configuration, runs the objective, and records what Optuna does not:
    the worker, the env steps, and why a trial failed."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, worker_id())
        if _is_surplus(trial, self.job.n_trials):
            trial.set_user_attr(SURPLUS, True)
            raise _SurplusTrial(f"trial {trial.number} is past the budget of {self.job.n_trials}")
        limit_threads(self.job.threads)  # torch may have been imported by the last trial
        params = sample_params(trial, self.job.space)
        context = TrialContext(
            trial,
            params,
            self.job.trials_dir / f"trial-{trial.number:04d}",
            progress_interval=self.job.progress_interval,
        )
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
