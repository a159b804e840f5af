"""Sweep: Optuna's TPE over any objective, on one worker or many, with a persistent study.

TrialOrchestrator is a Sweep whose objective trains an agent; a Sweep on its
own tunes anything that can be scored, a synthetic function included (the
tests measure TPE against random search that way).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optix_core.search_space import Param, parse_search_space
from optix_core.trials.context import BASELINE, ENV_STEPS, ERROR
from optix_core.trials.pool import SweepError, TrialFeed, run_worker_processes
from optix_core.trials.storage import StorageError, resolve_storage
from optix_core.trials.threads import threads_per_worker
from optix_core.trials.worker import (
    SAMPLERS,
    Objective,
    PrunerConfig,
    SamplerConfig,
    WorkerJob,
    finished_trials,
    run_trials,
)

TRIALS_DIR = "trials"
DEFAULT_STUDY = "optix-tune"
SEED_ATTR = "optix_seed"  # study user attributes: the sweep's seed ...
SETTINGS_ATTR = "optix_settings"  # ... and every setting that decides what a trial measures


class SweepSettingsError(ValueError):
    """A study continued with other settings than it was created with."""


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
    processes (the objective must then be picklable), each with its share of
    the cores (``threads_per_worker``, see ``optix_core.trials.threads``),
    and TPE then runs with ``constant_liar`` (as it does on a database
    storage, which workers on other machines may share), so that workers do
    not propose the same configuration side by side. Every argument is
    checked before any trial starts.

    A new study stores the sweep's seed and settings (the space, direction,
    sampler, pruner and ``settings``, a dict of the caller's own) as user
    attributes; continuing a study checks them, and other settings raise
    ``SweepSettingsError``. ``seed=None`` draws a seed for a new study and
    takes the stored one for a continued study. ``baseline`` (a
    configuration, e.g. the algorithm's defaults) is enqueued as a new
    study's first trial. ``timeout`` (seconds) starts no trial after it has
    passed (running trials finish). ``progress_interval`` (seconds) prints a
    line for each running trial at most that often.
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
        baseline: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        threads_per_worker: int | None = None,
        progress_interval: float | None = None,
        settings: Mapping[str, Any] | None = None,
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
        if threads_per_worker is not None:
            check_int("threads_per_worker", threads_per_worker, 0)
        for name, value in (("timeout", timeout), ("progress_interval", progress_interval)):
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0 seconds or None, got {value!r}")
        self.space = parse_search_space(param_space)
        self.baseline = _check_baseline(baseline, self.space)
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
        self.seed_given = seed is not None
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        shared = n_workers > 1 or (self.storage.heartbeat and "sqlite" not in self.storage.location)
        self.sampler = SamplerConfig(sampler, self.seed, n_startup_trials, constant_liar=shared)
        self.pruner = PrunerConfig(pruner_warmup_steps, pruner_startup_trials, prune)
        self.objective = objective
        self.feed = TrialFeed(on_trial_end)
        self.timeout = timeout
        self.threads = threads_per_worker  # None: each worker's share of the cores
        self.progress_interval = progress_interval
        self.settings = _jsonable(
            {
                "direction": direction,
                "param_space": {name: _spec(p) for name, p in self.space.items()},
                "sampler": sampler,
                "n_startup_trials": n_startup_trials,
                "pruner": dataclasses.asdict(self.pruner),
                **(settings or {}),
            }
        )
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
            self._settle(study)
            self._study = study
        return self._study

    def _settle(self, study: optuna.Study) -> None:
        """Store a new study's seed and settings (and its baseline trial); check a
        continued study's."""
        stored = study.user_attrs.get(SETTINGS_ATTR)
        stored_seed = study.user_attrs.get(SEED_ATTR)
        if stored is None:
            study.set_user_attr(SEED_ATTR, self.seed)
            study.set_user_attr(SETTINGS_ATTR, self.settings)
            if self.baseline is not None and not study.get_trials(deepcopy=False):
                study.enqueue_trial(dict(self.baseline), user_attrs={BASELINE: True})
            return
        if stored_seed is not None and stored_seed != self.seed:
            if self.seed_given:
                raise SweepSettingsError(
                    f"study {self.study_name!r} in {self.storage.display} was created with seed "
                    f"{stored_seed}, not {self.seed}: continue it with its seed (or none), or "
                    "name another study"
                )
            self.adopt_seed(int(stored_seed))
        changed = settings_diff(stored, self.settings)
        if changed:
            raise SweepSettingsError(
                f"study {self.study_name!r} in {self.storage.display} was created with other "
                f"settings ({'; '.join(changed)}): continue it with its settings, or name "
                "another study"
            )

    def adopt_seed(self, seed: int) -> None:
        """Continue a stored study with its seed (``seed=None`` was given)."""
        self.seed = seed
        self.sampler = dataclasses.replace(self.sampler, seed=seed)

    def run(self) -> tuple[dict[str, Any], float]:
        """Run trials until the budget is spent; return the best (params, score).

        ``Interrupted`` (see ``optix_core.trials.stopping``) stops every worker
        and marks their running trials FAIL before it goes on.
        """
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
            deadline=None if self.timeout is None else time.time() + self.timeout,
            threads=threads_per_worker(self.threads, self.n_workers),
            progress_interval=self.progress_interval,
        )
        if self.n_workers == 1:
            study.sampler = self.sampler.build(0, finished_trials(study))
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


def settings_diff(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"key: stored X, now Y"`` for each setting that differs."""
    missing = object()
    changed = []
    for key in sorted(set(stored) | set(current)):
        was, now = stored.get(key, missing), current.get(key, missing)
        if was != now:
            show = lambda v: "unset" if v is missing else json.dumps(v)  # noqa: E731
            changed.append(f"{key}: {show(was)} then, {show(now)} now")
    return changed


def _jsonable(value: Any) -> Any:
    """``value`` as the study's user attributes hold it (tuples become lists)."""
    return json.loads(json.dumps(value, default=repr))


def _spec(p: Param) -> list[Any]:
    return [p.kind, *p.choices] if p.kind == "categorical" else [p.kind, p.low, p.high]


def _check_baseline(
    baseline: Mapping[str, Any] | None, space: dict[str, Param]
) -> dict[str, Any] | None:
    """The baseline configuration, limited to values its space can hold; None if empty.

    A value outside its range (a default the tuning range excludes) is left
    for the sampler, not enqueued out of range.
    """
    if baseline is None:
        return None
    unknown = sorted(set(baseline) - set(space))
    if unknown:
        raise ValueError(f"baseline sets {', '.join(unknown)}, which the search space lacks")
    kept = {}
    for name, value in baseline.items():
        p = space[name]
        if p.kind == "categorical":
            if value in p.choices:
                kept[name] = value
        elif isinstance(value, int | float) and p.low <= value <= p.high:
            kept[name] = int(value) if p.kind in ("int", "log_int") else float(value)
    return kept or None


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
