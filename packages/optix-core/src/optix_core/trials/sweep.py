"""Sweep: Optuna's TPE over any objective, on one worker or many, with a persistent study.

TrialOrchestrator is a Sweep whose objective trains an agent; a Sweep on its
own tunes anything that can be scored, a synthetic function included (the
tests measure TPE against random search that way).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optix_core.search_space import parse_search_space
from optix_core.trials.context import ENV_STEPS, ERROR
from optix_core.trials.pool import SweepError, TrialFeed, run_worker_processes
from optix_core.trials.storage import StorageError, resolve_storage
from optix_core.trials.worker import (
    SAMPLERS,
    Objective,
    PrunerConfig,
    SamplerConfig,
    WorkerJob,
    run_trials,
)

TRIALS_DIR = "trials"
DEFAULT_STUDY = "optix-tune"


class Sweep:
    """Runs ``objective`` on ``n_trials`` configurations drawn from ``param_space``.

    ``objective(context) -> float`` gets a ``TrialContext`` (see there).
    Configurations come from Optuna's TPE sampler (``sampler="random"`` for
    random search), seeded by ``seed``; the first ``n_startup_trials`` are
    random. Trials report intermediate values to a MedianPruner whose
    warm-up, ``pruner_warmup_steps``, is in the objective's steps.

    The study lives in ``storage`` (see ``optix_core.trials.storage``: by
    default an SQLite file in ``run_dir`` for one worker, a journal file for
    several) under ``study_name``; a study that exists is continued, and
    ``n_trials`` counts its trials too. ``run_dir`` (default
    ``runs/tune-<time>-<pid>``) holds the default storage and one directory
    per trial under ``trials/``, named by trial number: one study per run
    directory. ``n_workers > 1`` runs spawned worker
    processes (the objective must then be picklable). Every argument is
    checked before any trial starts.
    """

    def __init__(
        self,
        objective: Objective,
        param_space: Mapping[str, Any],
        n_trials: int = 20,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        storage: str | os.PathLike[str] | None = None,
        study_name: str | None = None,
        n_workers: int = 1,
        direction: str = "maximize",
        seed: int | None = None,
        sampler: str = "tpe",
        n_startup_trials: int = 10,
        pruner_warmup_steps: int = 0,
        pruner_startup_trials: int = 5,
        prune: bool = True,
        heartbeat_interval: int = 10,
        grace_period: int | None = None,
        on_trial_end: Callable[[FrozenTrial], None] | None = None,
    ) -> None:
        check_int("n_trials", n_trials, 1)
        check_int("n_workers", n_workers, 1)
        check_int("n_startup_trials", n_startup_trials, 0)
        check_int("pruner_warmup_steps", pruner_warmup_steps, 0)
        check_int("pruner_startup_trials", pruner_startup_trials, 0)
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.space = parse_search_space(param_space)
        self.n_trials = n_trials
        self.n_workers = n_workers
        self.direction = direction
        self.study_name = study_name or DEFAULT_STUDY
        self.run_dir = (
            Path(run_dir)
            if run_dir is not None
            else Path("runs") / f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        )
        self.storage = resolve_storage(
            storage, n_workers, self.run_dir, heartbeat_interval, grace_period
        )
        self.sampler = SamplerConfig(sampler, seed, n_startup_trials)
        self.pruner = PrunerConfig(pruner_warmup_steps, pruner_startup_trials, prune)
        self.objective = objective
        self.feed = TrialFeed(on_trial_end)
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, opened (and created if new) on first use.

        Raises ``StorageError`` when the storage cannot be reached.
        """
        if self._study is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            study = optuna.create_study(
                storage=self.storage.open(),
                study_name=self.study_name,
                direction=self.direction,
                sampler=self.sampler.build(0),
                pruner=self.pruner.build(),
                load_if_exists=True,
            )
            if study.direction.name.lower() != self.direction:
                raise StorageError(
                    f"study {self.study_name!r} in {self.storage.display} is a "
                    f"{study.direction.name.lower()} study; name another study to {self.direction}"
                )
            self._study = study
        return self._study

    def run(self) -> tuple[dict[str, Any], float]:
        """Run trials until the budget is spent; return the best (params, score)."""
        study = self.study
        job = WorkerJob(
            objective=self.objective,
            space=self.space,
            n_trials=self.n_trials,
            storage=self.storage,
            study_name=self.study_name,
            trials_dir=self.run_dir.resolve() / TRIALS_DIR,
            sampler=self.sampler,
            pruner=self.pruner,
            optuna_verbosity=optuna.logging.get_verbosity(),
        )
        if self.n_workers == 1:
            run_trials(job, study, callbacks=[self.feed])
        else:
            run_worker_processes(job, self.n_workers, study, self.feed)
        return self.best()

    def best(self) -> tuple[dict[str, Any], float]:
        """The best completed trial's configuration and score."""
        trials = self.study.get_trials(deepcopy=False)
        if not any(t.state is TrialState.COMPLETE for t in trials):
            errors = [t.user_attrs[ERROR] for t in trials if ERROR in t.user_attrs]
            why = f"; first error: {errors[0]}" if errors else ""
            raise SweepError(
                f"no trial of study {self.study_name!r} completed "
                f"({len(trials)} trial(s): {_states(trials)}){why}"
            )
        best = self.study.best_trial
        return dict(best.params), float(best.value)

    @property
    def env_steps(self) -> int:
        """Environment steps taken by every trial of the study, the failed and pruned too."""
        return sum(int(t.user_attrs.get(ENV_STEPS, 0)) for t in self.study.get_trials(False))


def _states(trials: list[FrozenTrial]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
