"""``optix tune``: trial-level search for a registered agent, then optionally ``optix train``.

Importing this module is cheap (``optix list`` builds every sub-parser);
Optuna, numpy and gymnasium load only when ``tune`` runs.

    optix tune CartPole-v1 --algo cem --trials 20 --workers 2 --then-train

Each trial trains the agent with hyperparameters from the AgentSpec's
search space (``--hp`` fixes one instead, and is kept for ``--then-train``)
over the spec's rollout (its preset for the environment, where it has one:
``AgentSpec.settings``), and is scored by a deterministic evaluation
of its best checkpoint. Storage: an SQLite file in the run directory for one
worker, a journal file there for several, or ``--storage`` (a PostgreSQL URL
for workers on several machines: run the same command, with the same
``--storage`` and ``--study-name``, on each). The run directory,
``runs/<env>-<algo>-tune-<time>/``, holds the default storage, every trial's
checkpoints under ``trials/`` and ``tune.json``: the best configuration, its
score and every environment step the sweep took.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from optix_core.cli.args import (
    add_algorithm_args,
    add_run_dir_arg,
    add_seed_arg,
    add_verbose_arg,
    check_at_least,
    parse_hyperparams,
    resolve_spec,
)
from optix_core.cli.errors import UsageError
from optix_core.cli.train import LOOP_DEFAULTS, run_train

TUNE_JSON = "tune.json"


def add_parser(subparsers: Any) -> None:
    """Register ``optix tune`` on the ``optix`` command's sub-parsers."""
    p = subparsers.add_parser("tune", help="search hyperparameters over short trials (Optuna TPE)")
    add_algorithm_args(p)
    p.add_argument("--trials", type=int, default=20, help="trials to run (default: 20)")
    p.add_argument(
        "--trial-steps", type=int, default=50_000, help="env steps per trial (default: 50000)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument(
        "--storage",
        help="study storage: postgresql+psycopg://user@host:port/db, sqlite:///file.db (one "
        "worker) or a journal file path (default: a file in the run directory)",
    )
    p.add_argument("--study-name", help="study to create or join (default: ENV-ALGO)")
    p.add_argument(
        "--seeds-per-trial", type=int, default=1, help="score the mean of N seeds (default: 1)"
    )
    p.add_argument(
        "--eval-episodes", type=int, default=10, help="scoring episodes per seed (default: 10)"
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        help="env steps before a trial can be pruned (default: a quarter of --trial-steps)",
    )
    add_seed_arg(p)
    add_run_dir_arg(p)
    p.add_argument(
        "--then-train", action="store_true", help="train with the best configuration afterwards"
    )
    p.add_argument(
        "--max-windows",
        "--max-episodes",
        dest="max_windows",
        type=int,
        help="with --then-train: stop after N windows",
    )
    add_verbose_arg(p)
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        import optuna

        from optix_core.search_space import SearchSpaceError, parse_search_space
        from optix_core.trials import StorageError, SweepError, TrialOrchestrator
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    from optix_core.runs import RunError, new_run_dir
    from optix_core.trials.factories import RegisteredAgentFactory, VectorPipelineFactory
    from optix_core.trials.rl_trial import TRIAL_LOOP_DEFAULTS
    from optix_core.trials.storage import resolve_storage

    _check_counts(args)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    spec = resolve_spec(args.env, args.algo, args.backend)
    fixed = parse_hyperparams(args.hp)
    defaults, rollout = spec.settings(args.env)  # the env's preset, where the spec has one
    agent_factory = RegisteredAgentFactory(
        spec.name, args.env, spec.backend, args.device or "auto", {**defaults, **fixed}
    )
    _check_agent(agent_factory, args.seed)
    space = {k: v for k, v in spec.search_space.items() if k not in fixed}
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
    try:
        run_dir = new_run_dir(Path(args.run_dir), args.env, f"{spec.name}-tune")
    except RunError as exc:
        raise UsageError(str(exc)) from None
    study_name = args.study_name or f"{args.env}-{spec.name}"
    orchestrator = TrialOrchestrator(
        agent_factory,
        VectorPipelineFactory(args.env, rollout.get("n_envs", 1), rollout.get("window_size", 2048)),
        space,
        n_trials=args.trials,
        trial_steps=args.trial_steps,
        eval_env_id=args.env,
        eval_episodes=args.eval_episodes,
        seeds_per_trial=args.seeds_per_trial,
        seed=args.seed,
        pruner_warmup_steps=args.warmup_steps,
        loop_kwargs={k: v for k, v in LOOP_DEFAULTS.items() if k not in TRIAL_LOOP_DEFAULTS},
        run_dir=run_dir,
        storage=args.storage,
        study_name=study_name,
        n_workers=args.workers,
        on_trial_end=lambda trial: print(trial_line(trial), flush=True),
    )
    print(
        f"optix: tuning {spec.name} ({spec.backend}) on {args.env}: {args.trials} trials of "
        f"{args.trial_steps:,} env steps, {args.workers} worker(s), seed {args.seed}, "
        f"study {study_name!r} in {orchestrator.storage.display}, run directory {run_dir}",
        flush=True,
    )
    try:
        best_params, best_score = orchestrator.run()
    except SweepError as exc:
        print(f"optix: error: {exc}", file=sys.stderr)
        return 1
    best = orchestrator.study.best_trial
    print(
        f"optix: best trial {best.number}: score {best_score:.1f} (mean of {args.eval_episodes} "
        f"deterministic episodes per seed) with {_params(best_params)}\n"
        f"optix: {orchestrator.env_steps:,} env steps over {len(orchestrator.study.trials)} "
        "trials, scoring episodes included",
        flush=True,
    )
    summary = {
        "env_id": args.env,
        "algo": spec.name,
        "backend": spec.backend,
        "seed": args.seed,
        "study_name": study_name,
        "storage": orchestrator.storage.display,
        "trials": len(orchestrator.study.trials),
        "trial_steps": args.trial_steps,
        "env_steps": orchestrator.env_steps,
        "best_trial": best.number,
        "best_score": best_score,
        "best_params": best_params,
        "fixed_params": fixed,
    }
    (run_dir / TUNE_JSON).write_text(json.dumps(summary, indent=2))
    if not args.then_train:
        return 0
    return run_train(_train_argv(args, spec.name, spec.backend, {**fixed, **best_params}))


def _check_counts(args: argparse.Namespace) -> None:
    if not args.env:
        raise UsageError("tune needs an environment id (optix tune CartPole-v1)")
    for flag, value, minimum in [
        ("--trials", args.trials, 1),
        ("--trial-steps", args.trial_steps, 1),
        ("--workers", args.workers, 1),
        ("--seeds-per-trial", args.seeds_per_trial, 1),
        ("--eval-episodes", args.eval_episodes, 1),
        ("--warmup-steps", args.warmup_steps, 0),
        ("--max-windows", args.max_windows, 1),
        ("--seed", args.seed, 0),
    ]:
        check_at_least(flag, value, minimum)


def _check_agent(factory: Any, seed: int) -> None:
    """Build the agent trials start from (defaults and --hp): a bad --hp fails here,
    not in every trial."""
    from optix_core.hyperparams import HyperparamError
    from optix_core.registry import RegistryError

    try:
        factory({}, seed=seed).teardown()
    except (RegistryError, HyperparamError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _train_argv(args: argparse.Namespace, algo: str, backend: str, hp: dict[str, Any]) -> list[str]:
    """``optix train`` with the best configuration: the same command a user would type."""
    argv = [args.env, "--algo", algo, "--backend", backend]
    argv += ["--seed", str(args.seed), "--run-dir", args.run_dir]
    if args.device is not None:
        argv += ["--device", args.device]
    if args.max_windows is not None:
        argv += ["--max-windows", str(args.max_windows)]
    if args.verbose:
        argv.append("--verbose")
    for key, value in hp.items():
        argv += ["--hp", f"{key}={json.dumps(value)}"]
    return argv


def trial_line(trial: Any) -> str:
    """One line for a finished trial: its state, score, env steps and configuration."""
    from optix_core.trials.context import ENV_STEPS, ERROR

    steps = f"{int(trial.user_attrs.get(ENV_STEPS, 0)):>9,} env steps"
    state = trial.state.name
    if state == "COMPLETE":
        outcome = f"score {trial.value:>8.1f}"
    elif state == "PRUNED":
        outcome = f"pruned at {trial.last_step:,} steps"
    else:
        outcome = trial.user_attrs.get(ERROR, "worker lost")
    return f"trial {trial.number:>3}  {state:<8}  {outcome}  {steps}  {_params(trial.params)}"


def _params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
