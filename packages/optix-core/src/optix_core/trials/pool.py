"""Worker processes of one sweep, and the trials they finish, seen from the caller.

Workers are started with multiprocessing's ``spawn`` method: each is a fresh
interpreter that inherits no framework state (a CUDA context, TensorFlow's
thread pools, an open environment) from the caller. The job travels by
pickle, so the objective and everything it holds must be picklable: a
module-level function, an instance of a module-level class, or, for
TrialOrchestrator's factories, a ``"module:callable"`` string. A script that
starts workers needs the usual ``if __name__ == "__main__":`` guard.

A worker killed by a signal (``kill -9``, the OOM killer) leaves its trial
RUNNING; the pool marks that trial FAIL at once, on every storage, and starts
a replacement worker while budget remains. A worker that exits with an error
stops the sweep with that error.

Workers start with SIGINT ignored and their share of the cores (see
``threads``). When the caller is stopped (Ctrl-C, SIGTERM turned into
``Interrupted`` by ``stopping.stop_on_signals``, any exception), the pool
sends every worker SIGTERM, on which a worker fails its running trial and
ends; one that has not ended after ``STOP_TIMEOUT_S`` is killed, and its
trial failed for it. No worker outlives the pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from optix_core.trials.context import STOPPED, SURPLUS, WORKER
from optix_core.trials.stopping import Interrupted, sigint_ignored
from optix_core.trials.threads import thread_environment
from optix_core.trials.worker import (
    WorkerJob,
    count_trials,
    fail_trials_of,
    worker_id,
    worker_main,
)

log = logging.getLogger("optix")

POLL_S = 0.5
STOP_TIMEOUT_S = 30.0  # how long stopping workers may take before they are killed
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class SweepError(RuntimeError):
    """A sweep that could not produce a result: workers failing, no trial completing."""


class TrialFeed:
    """Hands each finished trial to ``on_finished`` once, in trial-number order.

    It is an Optuna study callback for a worker in the caller's process, and
    is polled for the trials of worker processes. Surplus trials (started
    past the budget, never run) are not handed on.
    """

    def __init__(self, on_finished: Callable[[FrozenTrial], None] | None) -> None:
        self.on_finished = on_finished
        self.seen: set[int] = set()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._emit(trial)

    def poll(self, study: optuna.Study) -> None:
        for trial in study.get_trials(deepcopy=False, states=FINISHED):
            self._emit(trial)

    def _emit(self, trial: FrozenTrial) -> None:
        if trial.number in self.seen:
            return
        self.seen.add(trial.number)
        if self.on_finished is not None and not trial.user_attrs.get(SURPLUS):
            self.on_finished(trial)


def run_worker_processes(
    job: WorkerJob, n_workers: int, study: optuna.Study, feed: TrialFeed
) -> None:
    """Run ``n_workers`` spawned workers until the budget is spent; replace dead ones."""
    try:
        pickle.dumps(job)
    except Exception as exc:
        raise TypeError(
            "the objective cannot be sent to worker processes (n_workers > 1): use module-level "
            "functions or 'module:callable' strings, not lambdas or closures "
            f"({type(exc).__name__}: {exc})"
        ) from None
    context = multiprocessing.get_context("spawn")
    procs: dict[int, multiprocessing.process.BaseProcess] = {}

    def start(index: int) -> None:
        proc = context.Process(target=worker_main, args=(job, index), name=f"optix-worker-{index}")
        with sigint_ignored(), thread_environment(job.threads):
            proc.start()
        procs[index] = proc

    for index in range(n_workers):
        start(index)
    next_index, restarts = n_workers, 0
    try:
        while procs:
            time.sleep(POLL_S)
            for index, proc in list(procs.items()):
                if proc.exitcode is None:
                    continue
                del procs[index]
                proc.join()
                if proc.exitcode == 0:
                    continue
                signal_name = _signal_name(-proc.exitcode)
                lost = fail_trials_of(study, worker_id(proc.pid), f"worker died ({signal_name})")
                lost += _stopped_trials_of(study, proc.pid)
                if proc.exitcode > 0:
                    raise SweepError(
                        f"worker {index} (pid {proc.pid}) failed with exit code "
                        f"{proc.exitcode}; its error is printed above"
                    )
                log.warning(
                    "worker %d (pid %d) died (%s); trial(s) %s marked FAIL",
                    index,
                    proc.pid,
                    signal_name,
                    ", ".join(map(str, sorted(set(lost)))) or "none",
                )
                if count_trials(study).done < job.n_trials:
                    if restarts >= job.n_trials:
                        raise SweepError(f"workers died {restarts + 1} times; sweep abandoned")
                    restarts += 1
                    start(next_index)
                    next_index += 1
            feed.poll(study)
    except BaseException as exc:
        stopped = _stop_workers(study, list(procs.values()), exc)
        if isinstance(exc, Interrupted):
            exc.failed += stopped
        raise
    feed.poll(study)


def _stop_workers(
    study: optuna.Study, procs: list[multiprocessing.process.BaseProcess], why: BaseException
) -> list[int]:
    """SIGTERM every worker, kill those that do not end in time; their trials are FAIL."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.exitcode is None:
            proc.kill()
            proc.join()
    reason = f"stopped by {why.signame}" if isinstance(why, Interrupted) else "sweep stopped"
    failed: list[int] = []
    for proc in procs:
        failed += fail_trials_of(study, worker_id(proc.pid), reason)
        failed += _stopped_trials_of(study, proc.pid)
    return sorted(set(failed))


def _stopped_trials_of(study: optuna.Study, pid: int | None) -> list[int]:
    """Trials of the worker ``pid`` that it failed itself on being stopped."""
    owner = worker_id(pid)
    return [
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.user_attrs.get(WORKER) == owner and STOPPED in t.user_attrs
    ]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
