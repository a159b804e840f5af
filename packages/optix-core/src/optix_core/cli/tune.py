"""``optix tune``: trial-level search for a registered agent, then optionally ``optix train``.

Importing this module is cheap (``optix list`` builds every sub-parser);
Optuna, numpy and gymnasium load only when ``tune`` runs.

    optix tune CartPole-v1 --algo cem --trials 20 --workers 2 --then-train
    optix tune --resume runs/CartPole-v1-cem-tune-<time>      # after Ctrl-C or a crash
    optix tune show runs/CartPole-v1-cem-tune-<time> [--csv]
    optix train CartPole-v1 --hp-file runs/CartPole-v1-cem-tune-<time>/tune.json

Each trial trains the agent with hyperparameters from the AgentSpec's
search space (``--hp`` fixes one instead, and is kept for ``--then-train``)
over the spec's rollout (its preset for the environment, where it has one:
``AgentSpec.settings``; ``--n-envs`` and ``--window-size`` replace it, and
``tune.json`` keeps it for ``optix train --hp-file``), with no online tuning, and is scored by a
deterministic evaluation of its best checkpoint. The first trial is the
baseline: the algorithm's defaults (and preset). Storage: an SQLite file in
the run directory for one worker, a journal file there for several, or
``--storage`` (a PostgreSQL URL for workers on several machines: run the
same command, with the same ``--storage`` and ``--study-name``, on each).
The run directory, ``runs/<env>-<algo>-tune-<time>/``, holds the default
storage, ``sweep.json`` (where its study lives), every trial's checkpoints
under ``trials/`` and, when the sweep ends, ``tune.json``: the best
configuration, its score and every environment step the sweep took.

The seed and every setting that decides what a trial measures are stored
with the study; ``--resume RUN`` continues it with them (``--trials``,
``--workers``, ``--timeout``, ``--device`` and the like may change; a flag
that would change what is measured is refused). Ctrl-C or SIGTERM stops
every worker, marks their running trials FAIL (they never count against the
budget) and prints one line.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import Any

from optix_core.cli.args import (
    add_algorithm_args,
    add_env_kwargs_arg,
    add_rollout_args,
    add_run_dir_arg,
    add_seed_arg,
    add_verbose_arg,
    budget_without_learning,
    check_at_least,
    check_rollout_args,
    parse_hyperparams,
    pipeline_options,
    resolve_spec,
    rollout_size,
    whole_windows,
)
from optix_core.cli.errors import UsageError
from optix_core.cli.train import LOOP_DEFAULTS, run_train

TUNE_JSON = "tune.json"
SWEEP_JSON = "sweep.json"  # written when the sweep starts: where its study lives
PROGRESS_INTERVAL_S = 10.0
# Defaults of the flags that decide what a trial measures; None in argparse, so
# that --resume can tell a flag given from one left out.
MEASURED_DEFAULTS: dict[str, Any] = {
    "trials": 20,
    "workers": 1,
    "trial_steps": 50_000,
    "seeds_per_trial": 1,
    "eval_episodes": 10,
    "sampler": "tpe",
    "n_startup_trials": 10,
}
FLAGS = {
    "env": "the environment",
    "env_kwargs": "--env-kwarg",
    "algo": "--algo",
    "backend": "--backend",
    "hp": "--hp",
    "n_envs": "--n-envs",
    "window_size": "--window-size",
    "trial_steps": "--trial-steps",
    "seeds_per_trial": "--seeds-per-trial",
    "eval_episodes": "--eval-episodes",
    "warmup_steps": "--warmup-steps",
    "sampler": "--sampler",
    "n_startup_trials": "--n-startup-trials",
    "seed": "--seed",
    "study_name": "--study-name",
}


def add_parser(subparsers: Any) -> None:
    """Register ``optix tune`` on the ``optix`` command's sub-parsers."""
    p = subparsers.add_parser(
        "tune",
        help="search hyperparameters over short trials (Optuna TPE); "
        "'optix tune show RUN' lists a sweep's trials",
    )
    add_algorithm_args(p)
    add_env_kwargs_arg(p)
    add_rollout_args(p)
    p.add_argument("run", nargs="?", help="with 'show': the tune run directory")
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="trials to run, in all (default: 20; with --resume: the sweep's own budget)",
    )
    p.add_argument(
        "--trial-steps",
        type=int,
        metavar="STEPS",
        help=f"env steps per trial (default: {MEASURED_DEFAULTS['trial_steps']})",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="K",
        help="worker processes (default: 1; with --resume: as the sweep ran)",
    )
    p.add_argument(
        "--threads-per-worker",
        type=int,
        metavar="T",
        help="framework threads in each worker (default: the cores shared out among the "
        "workers; 0: the frameworks' own defaults)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="study storage: postgresql+psycopg://user@host:port/db, sqlite:///file.db (one "
        "worker) or a journal file path (default: a file in the run directory)",
    )
    p.add_argument(
        "--study-name", metavar="NAME", help="study to create or join (default: ENV-ALGO)"
    )
    p.add_argument(
        "--seeds-per-trial", type=int, metavar="M", help="score the mean of N seeds (default: 1)"
    )
    p.add_argument(
        "--eval-episodes", type=int, metavar="E", help="scoring episodes per seed (default: 10)"
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        metavar="STEPS",
        help="env steps before a trial can be pruned (default: a quarter of --trial-steps)",
    )
    p.add_argument("--sampler", choices=("tpe", "random"), help="sampler (default: tpe)")
    p.add_argument(
        "--n-startup-trials",
        type=int,
        metavar="N",
        help="random trials before TPE models the results (default: 10)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="start no trial after this many seconds (running trials finish)",
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=PROGRESS_INTERVAL_S,
        metavar="SECONDS",
        help="seconds between progress lines of a running trial (default: 10; 0: every evaluation)",
    )
    add_seed_arg(p)
    add_run_dir_arg(p)
    p.add_argument("--resume", metavar="RUN", help="continue the sweep in run directory RUN")
    p.add_argument("--csv", action="store_true", help="with 'show': CSV instead of a table")
    p.add_argument(
        "--then-train", action="store_true", help="train with the best configuration afterwards"
    )
    p.add_argument(
        "--max-windows",
        "--max-episodes",
        dest="max_windows",
        type=int,
        metavar="N",
        help="with --then-train: stop after N windows",
    )
    add_verbose_arg(p)
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    if args.env == "show":
        return cmd_show(args)
    if args.run is not None:
        raise UsageError(f"unexpected argument {args.run!r} (optix tune ENV, or tune show RUN)")
    try:
        from optix_core.trials.stopping import Interrupted, stop_on_signals
    except ImportError as exc:
        raise UsageError(str(exc)) from None

    state: dict[str, Any] = {}
    with stop_on_signals():
        try:
            try:
                return _tune(args, state)
            finally:
                _stop_resource_tracker()
        except Interrupted as exc:
            print(_stopped_line(exc, state.get("run_dir")), file=sys.stderr, flush=True)
            return exc.exit_code


def _stop_resource_tracker() -> None:
    """End the helper process multiprocessing starts with the first worker, now
    rather than just after this process exits: ``optix tune`` leaves no process."""
    from multiprocessing import resource_tracker

    # AttributeError: another Python's multiprocessing; ChildProcessError: none started.
    with contextlib.suppress(AttributeError, OSError, ChildProcessError):
        resource_tracker._resource_tracker._stop()


def _stopped_line(exc: Any, run_dir: Path | None) -> str:
    if run_dir is None:
        return f"optix: stopped by {exc.signame} before the sweep started"
    failed = sorted(set(exc.failed))
    trials = (
        f"trial(s) {', '.join(map(str, failed))} marked FAIL (not counted in the budget)"
        if failed
        else "no trial was running"
    )
    return f"optix: stopped by {exc.signame}: {trials}; continue with optix tune --resume {run_dir}"


def _tune(args: argparse.Namespace, state: dict[str, Any]) -> int:
    import optuna

    from optix_core.runs import RunError, new_run_dir
    from optix_core.search_space import SearchSpaceError, parse_search_space
    from optix_core.trials import StorageError, SweepError, SweepSettingsError, TrialOrchestrator
    from optix_core.trials.factories import RegisteredAgentFactory, VectorPipelineFactory
    from optix_core.trials.rl_trial import TRIAL_LOOP_DEFAULTS
    from optix_core.trials.storage import resolve_storage

    resumed = _resume_settings(args) if args.resume else None
    _fill_defaults(args)
    _check_counts(args)
    env_kwargs = parse_hyperparams(args.env_kwargs, "--env-kwarg")
    spec = resolve_spec(args.env, args.algo, args.backend, env_kwargs)
    fixed = parse_hyperparams(args.hp)
    defaults, rollout = spec.settings(args.env)  # the env's preset, where the spec has one
    agent_factory = RegisteredAgentFactory(
        spec.name,
        args.env,
        spec.backend,
        args.device or "auto",
        {**defaults, **fixed},
        spec.network(args.env),
        env_kwargs,
    )
    _check_agent(agent_factory, 0 if args.seed is None else args.seed)
    space = {k: v for k, v in spec.search_space.items() if k not in fixed}
    n_envs, window_size = rollout_size(args, rollout)
    _check_budgets_learn(args, spec.name, {**defaults, **fixed}, space, n_envs, window_size)
    try:
        parse_search_space(space)
        storage = resolve_storage(args.storage, args.workers, Path(args.run_dir))
        if args.storage is not None:
            storage.open()  # reachable? before anything is written
    except SearchSpaceError as exc:
        raise UsageError(f"{spec.name} ({spec.backend}): {exc}") from None
    except StorageError as exc:
        raise UsageError(str(exc)) from None

    if not args.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    if resumed is not None:
        run_dir = resumed
    else:
        try:
            run_dir = new_run_dir(Path(args.run_dir), args.env, f"{spec.name}-tune")
        except RunError as exc:
            raise UsageError(str(exc)) from None
    study_name = args.study_name or f"{args.env}-{spec.name}"
    try:
        orchestrator = TrialOrchestrator(
            agent_factory,
            VectorPipelineFactory(
                args.env,
                n_envs,
                window_size,
                spec.pipeline,
                pipeline_options(spec, rollout),
                env_kwargs,
            ),
            space,
            n_trials=args.trials,
            trial_steps=args.trial_steps,
            eval_env_id=args.env,
            eval_env_kwargs=env_kwargs,
            eval_episodes=args.eval_episodes,
            seeds_per_trial=args.seeds_per_trial,
            seed=args.seed,
            pruner_warmup_steps=args.warmup_steps,
            loop_kwargs={k: v for k, v in LOOP_DEFAULTS.items() if k not in TRIAL_LOOP_DEFAULTS},
            run_dir=run_dir,
            storage=args.storage,
            study_name=study_name,
            n_workers=args.workers,
            sampler=args.sampler,
            n_startup_trials=args.n_startup_trials,
            timeout=args.timeout,
            threads_per_worker=args.threads_per_worker,
            progress_interval=args.progress_interval,
            baseline={k: v for k, v in defaults.items() if k in space},
            settings={
                "env_id": args.env,
                "algo": spec.name,
                "backend": spec.backend,
                "fixed_params": fixed,
                "n_envs": n_envs,
                "window_size": window_size,
            },
            on_trial_end=lambda trial: print(trial_line(trial), flush=True),
        )
        orchestrator.study  # noqa: B018  (create it, or check a continued one's settings)
    except SweepSettingsError as exc:
        raise UsageError(str(exc)) from None
    except (StorageError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    state["run_dir"] = run_dir
    seed = orchestrator.seed
    _write_json(
        run_dir / SWEEP_JSON,
        {
            "storage": orchestrator.storage.location
            if orchestrator.storage.kind == "journal" or "sqlite" in orchestrator.storage.location
            else orchestrator.storage.display,
            "study_name": study_name,
            "env_id": args.env,
            "algo": spec.name,
            "backend": spec.backend,
            "trials": args.trials,
            "workers": args.workers,
        },
    )
    verb = "resuming" if resumed is not None else "tuning"
    print(
        f"optix: {verb} {spec.name} ({spec.backend}) on {args.env}: {args.trials} trials of "
        f"{args.trial_steps:,} env steps, {args.workers} worker(s), seed {seed}, "
        f"study {study_name!r} in {orchestrator.storage.display}, run directory {run_dir}",
        flush=True,
    )
    try:
        best_params, best_score = orchestrator.run()
    except SweepError as exc:
        print(f"optix: error: {exc}", file=sys.stderr)
        return 1
    best = orchestrator.study.best_trial
    trials = orchestrator.study.get_trials(deepcopy=False)
    print(
        f"optix: best trial {best.number}: score {best_score:.1f} (mean of {args.eval_episodes} "
        f"deterministic episodes per seed) with {_params(best_params)}\n"
        f"optix: {orchestrator.env_steps:,} env steps over {len(trials)} "
        "trials, scoring episodes included",
        flush=True,
    )
    summary = {
        "env_id": args.env,
        "algo": spec.name,
        "backend": spec.backend,
        "seed": seed,
        "study_name": study_name,
        "storage": orchestrator.storage.display,
        "trials": len(trials),
        "trial_steps": args.trial_steps,
        "env_steps": orchestrator.env_steps,
        "best_trial": best.number,
        "best_score": best_score,
        "best_params": best_params,
        "fixed_params": fixed,
        "n_envs": n_envs,  # the rollout the trials measured, which --hp-file keeps
        "window_size": window_size,
        "env_kwargs": env_kwargs,  # and the environment's arguments
    }
    _write_json(run_dir / TUNE_JSON, summary)
    if not args.then_train:
        return 0
    return run_train(_train_argv(args, spec.name, spec.backend, seed, run_dir / TUNE_JSON))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _check_budgets_learn(
    args: argparse.Namespace,
    algo: str,
    hyperparams: dict[str, Any],
    space: dict[str, Any],
    n_envs: int,
    window_size: int,
) -> None:
    """--trial-steps, and --then-train's --max-windows, that end before an
    off-policy agent first learns; what the sweep moves is not known yet."""
    window_steps = n_envs * window_size
    known = {k: v for k, v in hyperparams.items() if k not in space}
    trial = f"--trial-steps {args.trial_steps:,}"
    steps = whole_windows(args.trial_steps, window_steps)
    waste = "every trial would score the policy it started with"
    problems = [budget_without_learning(algo, known, n_envs, trial, steps, waste)]
    if args.then_train and args.max_windows is not None:
        steps = args.max_windows * window_steps
        budget = f"--max-windows {args.max_windows:,} ({steps:,} env steps)"
        waste = "the run after the sweep would hand back the policy it started with"
        problems.append(budget_without_learning(algo, known, n_envs, budget, steps, waste))
    for problem in problems:
        if problem is not None:
            raise UsageError(problem)


def _fill_defaults(args: argparse.Namespace) -> None:
    for dest, value in MEASURED_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)


def _check_counts(args: argparse.Namespace) -> None:
    if not args.env:
        raise UsageError(
            "tune needs an environment id (optix tune CartPole-v1), --resume RUN or show RUN"
        )
    for flag, value, minimum in [
        ("--trials", args.trials, 1),
        ("--trial-steps", args.trial_steps, 1),
        ("--workers", args.workers, 1),
        ("--threads-per-worker", args.threads_per_worker, 0),
        ("--seeds-per-trial", args.seeds_per_trial, 1),
        ("--eval-episodes", args.eval_episodes, 1),
        ("--warmup-steps", args.warmup_steps, 0),
        ("--n-startup-trials", args.n_startup_trials, 0),
        ("--max-windows", args.max_windows, 1),
        ("--seed", args.seed, 0),
    ]:
        check_at_least(flag, value, minimum)
    check_rollout_args(args)
    for flag, value in (
        ("--timeout", args.timeout),
        ("--progress-interval", args.progress_interval),
    ):
        if value is not None and not value >= 0:
            raise UsageError(f"{flag} must be >= 0 seconds, got {value}")


def _check_agent(factory: Any, seed: int) -> None:
    """Build the agent trials start from (defaults and --hp): a bad --hp fails here,
    not in every trial."""
    from optix_core.hyperparams import HyperparamError
    from optix_core.registry import RegistryError

    try:
        factory({}, seed=seed).teardown()
    except (RegistryError, HyperparamError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# ---- --resume and show: the study of a run directory ---------------------------------


def _locate(run: str, storage: str | None) -> tuple[Path, str, str]:
    """The run directory, its study's storage and its study name."""
    run_dir, location, study_name, _ = _locate_sweep(run, storage)
    return run_dir, location, study_name


def _locate_sweep(run: str, storage: str | None) -> tuple[Path, str, str, dict[str, Any]]:
    """``_locate``, and the rest of what ``sweep.json`` says."""
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise UsageError(f"tune run directory {run} does not exist")
    for name in (SWEEP_JSON, TUNE_JSON):
        path = run_dir / name
        if path.is_file():
            try:
                meta = json.loads(path.read_text())
                stored, study_name = meta["storage"], meta["study_name"]
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
            meta = meta if name == SWEEP_JSON else {}
            break
    else:
        raise UsageError(f"{run} is not an optix tune run directory: {SWEEP_JSON} is missing")
    if storage is None and "***" in stored:
        raise UsageError(
            f"the study of {run} is in {stored}, whose password is not stored: give --storage"
        )
    return run_dir, storage or stored, study_name, meta


def _load_study(location: str, study_name: str) -> Any:
    import optuna

    from optix_core.trials import StorageError
    from optix_core.trials.storage import resolve_storage

    try:
        spec = resolve_storage(location, 1 if location.startswith("sqlite") else 2, Path("."))
        return optuna.load_study(study_name=study_name, storage=spec.open())
    except StorageError as exc:
        raise UsageError(str(exc)) from None
    except KeyError:
        raise UsageError(f"no study {study_name!r} in {location}") from None


def _resume_settings(args: argparse.Namespace) -> Path:
    """Fill ``args`` from the stored study; refuse flags that would change what it measures."""
    from optix_core.trials.sweep import SEED_ATTR, SETTINGS_ATTR

    run_dir, location, study_name, meta = _locate_sweep(args.resume, args.storage)
    study = _load_study(location, study_name)
    for dest in ("trials", "workers"):  # the budget and workers as they were, unless given
        if getattr(args, dest) is None and isinstance(meta.get(dest), int):
            setattr(args, dest, meta[dest])
    settings = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(settings, dict) or "env_id" not in settings:
        raise UsageError(f"the study of {run_dir} holds no optix tune settings to resume from")
    stored = {
        "env": settings["env_id"],
        "algo": settings["algo"],
        "backend": settings["backend"],
        "hp": settings.get("fixed_params", {}),
        "env_kwargs": settings.get("eval_env_kwargs") or {},
        "n_envs": settings["n_envs"],
        "window_size": settings["window_size"],
        "trial_steps": settings["trial_steps"],
        "seeds_per_trial": settings["seeds_per_trial"],
        "eval_episodes": settings["eval_episodes"],
        "warmup_steps": settings["pruner"]["warmup_steps"],
        "sampler": settings["sampler"],
        "n_startup_trials": settings["n_startup_trials"],
        "seed": study.user_attrs.get(SEED_ATTR),
        "study_name": study_name,
    }
    given = {dest: getattr(args, dest) for dest in FLAGS}
    given["hp"] = parse_hyperparams(args.hp) if args.hp else None
    given["env_kwargs"] = (
        parse_hyperparams(args.env_kwargs, "--env-kwarg") if args.env_kwargs else None
    )
    changed = [
        f"{FLAGS[dest]} {_show(value)} (it has {_show(stored[dest])})"
        for dest, value in given.items()
        if value is not None and value != stored[dest]
    ]
    if changed:
        raise UsageError(
            f"--resume continues {run_dir} as it was configured; {', '.join(changed)} would "
            "change what its trials measure (start a new sweep instead)"
        )
    for dest, value in stored.items():
        setattr(args, dest, value)
    args.hp = [f"{k}={json.dumps(v)}" for k, v in stored["hp"].items()]
    args.env_kwargs = [f"{k}={json.dumps(v)}" for k, v in stored["env_kwargs"].items()]
    args.storage = location
    return run_dir


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={json.dumps(v)}" for k, v in value.items()) or "none"
    return str(value)


def cmd_show(args: argparse.Namespace) -> int:
    """``optix tune show RUN``: the best trial and every trial, as a table or CSV."""
    if args.run is None:
        raise UsageError("tune show needs a tune run directory (optix tune show RUN)")
    try:
        import optuna  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"optix tune needs Optuna: pip install 'optix-core[tune]' ({exc})"
        ) from None
    from optuna.trial import TrialState

    from optix_core.trials.sweep import SEED_ATTR

    _, location, study_name = _locate(args.run, args.storage)
    study = _load_study(location, study_name)
    trials = study.get_trials(deepcopy=False)
    if args.csv:
        _write_csv(trials, sys.stdout)
        return 0
    completed = [t for t in trials if t.state is TrialState.COMPLETE]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"
    print(
        f"optix: study {study_name!r} in {_display(location)}: {len(trials)} trial(s) "
        f"({states}), seed {study.user_attrs.get(SEED_ATTR, 'unknown')}"
    )
    if completed:
        best = study.best_trial
        print(f"best trial {best.number}: score {best.value:.1f} with {_params(best.params)}")
    else:
        print("best trial: none completed yet")
    for trial in trials:
        print(trial_line(trial))
    return 0


def _display(location: str) -> str:
    """A storage location without its password."""
    if "://" not in location:
        return location
    from sqlalchemy.engine import make_url

    return make_url(location).render_as_string(hide_password=True)


def _write_csv(trials: list[Any], out: Any) -> None:
    from optix_core.trials.context import ENV_STEPS
    from optix_core.trials.rl_trial import TRAIN_STEPS

    names: list[str] = []
    for trial in trials:
        names += [n for n in trial.params if n not in names]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["number", "state", "score", "env_steps", "train_env_steps", "duration_s", "note", *names]
    )
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else ""
        writer.writerow(
            [
                t.number,
                t.state.name,
                "" if t.value is None else t.value,
                t.user_attrs.get(ENV_STEPS, ""),
                t.user_attrs.get(TRAIN_STEPS, ""),
                "" if duration == "" else f"{duration:.1f}",
                _note(t),
                *(t.params.get(n, "") for n in names),
            ]
        )


def _train_argv(
    args: argparse.Namespace, algo: str, backend: str, seed: int, hp_file: Path
) -> list[str]:
    """``optix train`` with the best configuration: the same command a user would type."""
    argv = [args.env, "--algo", algo, "--backend", backend, "--hp-file", str(hp_file)]
    argv += ["--seed", str(seed), "--run-dir", args.run_dir]
    if args.device is not None:
        argv += ["--device", args.device]
    if args.max_windows is not None:
        argv += ["--max-windows", str(args.max_windows)]
    if args.verbose:
        argv.append("--verbose")
    return argv


def trial_line(trial: Any) -> str:
    """One line for a trial: its state, score, env steps and configuration."""
    from optix_core.trials.context import ENV_STEPS

    steps = f"{int(trial.user_attrs.get(ENV_STEPS, 0)):>9,} env steps"
    state = trial.state.name
    if state == "COMPLETE":
        outcome = f"score {trial.value:>8.1f}"
    elif state == "PRUNED":
        outcome = f"pruned at {trial.last_step:,} steps"
    else:
        outcome = _note(trial) or state.lower()
    line = f"trial {trial.number:>3}  {state:<8}  {outcome}  {steps}  {_params(trial.params)}"
    return line + ("  (baseline: the defaults)" if _is_baseline(trial) else "")


def _is_baseline(trial: Any) -> bool:
    from optix_core.trials.context import BASELINE

    return bool(trial.user_attrs.get(BASELINE))


def _note(trial: Any) -> str:
    """Why a trial failed or was stopped ("" for one that did not)."""
    from optix_core.trials.context import ERROR, STOPPED, SURPLUS

    if trial.state.name != "FAIL":
        return ""
    if trial.user_attrs.get(SURPLUS):
        return "past the budget (not run)"
    if ERROR in trial.user_attrs:
        return str(trial.user_attrs[ERROR])
    return str(trial.user_attrs.get(STOPPED, "worker lost"))


def _params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
