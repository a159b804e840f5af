"""``optix train``: one run of the loop on an environment, in a run directory.

A new run checks everything it was asked for (environment, algorithm,
hyperparameters, device) before it creates its run directory. The loop
writes the ``latest`` snapshot after every evaluated window, and after any
other once a second has passed since the last, so ``--resume RUN``
continues a killed run having lost at most the window in progress and the
second before it; it continues the run as it was configured, so flags that
would change what is trained are refused, and only the budget and the
device may change.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optix_core.cli import callbacks
from optix_core.cli.args import (
    add_actor_args,
    add_algorithm_args,
    add_env_kwargs_arg,
    add_rollout_args,
    add_run_dir_arg,
    add_seed_arg,
    add_verbose_arg,
    budget_without_learning,
    build_agent,
    check_at_least,
    check_rollout_args,
    parse_hyperparams,
    pipeline_options,
    resolve_spec,
    rollout_size,
    whole_windows,
)
from optix_core.cli.errors import UsageError

if TYPE_CHECKING:
    from optix_core.specs import AgentSpec

# How `optix train` runs the loop. RLOptimizer's own defaults are tensor-optix's
# (doubling up to 100 windows, 20 evaluations without improvement). Here every
# window is evaluated: its score is its own training episodes' (free), and
# judging candidates has a budget of its own (SELECTION_SHARE), so backing off
# would only stretch the confirmation. DORMANT takes 10 evaluations without a
# credited improvement and half as many windows again as the run took to its
# last record (BackoffScheduler's relative_patience); a record must add 2% of
# what the run has learned (record_gain: LunarLander's PPO creeps up for
# millions of steps after reaching 270, a point now and then). Until the best
# checkpoint reaches the environment's reward_threshold the patience is 3 times
# the windows to the last record (unsolved_patience): TD3 on
# LunarLanderContinuous sits below its record of window 53 until window 182,
# then climbs to 260, and relative patience alone stopped it at window 97; DQN
# on CartPole holds through its dips below 475. Replayed on recorded CartPole
# curves: PPO stops 8-24 windows after its 500 instead of 60, and DQN holds
# through the 60-window plateau below 150 that 10 plain evaluations end.
LOOP_DEFAULTS: dict[str, Any] = {
    "base_interval": 1,
    "backoff_factor": 1.0,
    "max_interval_episodes": 1,
    "plateau_threshold": 5,
    "dormant_threshold": 10,
    "relative_patience": 0.5,
    "record_gain": 0.02,
    "unsolved_patience": 3.0,
    "score_smoothing": 2,
    "noise_k": 2.0,
    "score_window": 20,
}
# With --tune the loop keeps the backed-off schedule online tuning was measured
# with (benchmarks/online_tuning_pendulum.py): the tuner needs windows to move
# the hyperparameters, and a run started at a bad learning rate sits flat at the
# random level until it has. Relative patience ended such a run at window 12.
TUNING_LOOP: dict[str, Any] = {
    "backoff_factor": 2.0,
    "max_interval_episodes": 8,
    "relative_patience": 0.0,
    "unsolved_patience": 0.0,
}
SELECTION_EPISODES = 5  # deterministic episodes that judge each checkpoint candidate
SELECTION_SHARE = 0.25  # judging takes at most this share of the training env steps
FINAL_EVAL_EPISODES = 20
# What a resumed run keeps from its config.json: these flags would change it.
FIXED_ON_RESUME = {
    "env": "the environment",
    "env_kwargs": "--env-kwarg",
    "algo": "--algo",
    "backend": "--backend",
    "seed": "--seed",
    "hp": "--hp",
    "hp_file": "--hp-file",
    "tune": "--tune",
    "selection_episodes": "--selection-episodes",
    "selection_share": "--selection-share",
    "n_envs": "--n-envs",
    "window_size": "--window-size",
    "no_early_stop": "--no-early-stop",
    "actors": "--actors",
    "ray": "--ray",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train on an environment until converged")
    add_algorithm_args(p)
    add_env_kwargs_arg(p)
    add_actor_args(p)
    add_seed_arg(p)
    p.add_argument(
        "--max-windows",
        "--max-episodes",
        dest="max_windows",
        type=int,
        metavar="N",
        help="stop after this many windows (--max-episodes is tensor-optix's name for it)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        metavar="STEPS",
        help="stop after this many environment steps (total_timesteps)",
    )
    add_rollout_args(p)
    p.add_argument(
        "--no-early-stop",
        action="store_true",
        help="train for the whole --max-steps or --max-windows: DORMANT is shown, not "
        "obeyed (a fixed-budget run, as Stable-Baselines3 trains)",
    )
    p.add_argument(
        "--selection-episodes",
        type=int,
        metavar="N",
        help=f"deterministic episodes judging each checkpoint candidate (default: "
        f"{SELECTION_EPISODES})",
    )
    p.add_argument(
        "--selection-share",
        type=float,
        metavar="FRACTION",
        help="judge checkpoint candidates only while judging has taken at most this share of "
        f"the training env steps (default: {SELECTION_SHARE})",
    )
    p.add_argument(
        "--hp-file",
        metavar="FILE",
        help="start from the hyperparameters in FILE: an optix tune run's tune.json (or its "
        "directory), for the best configuration it found and the rollout it measured, or a "
        "JSON object of name: value; --hp, --n-envs and --window-size override them",
    )
    add_run_dir_arg(p)
    p.add_argument("--resume", metavar="RUN", help="continue the run in directory RUN")
    p.add_argument(
        "--tune",
        action="store_true",
        help="tune hyperparameters online with SPSA over what the agent declares safe to move",
    )
    add_verbose_arg(p)
    callbacks.add_callback_args(p)
    p.set_defaults(handler=cmd_train)


def run_train(argv: list[str]) -> int:
    """``optix train`` with ``argv`` (the words after ``train``), as ``tune --then-train`` runs it."""
    parser = argparse.ArgumentParser(prog="optix")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return cmd_train(parser.parse_args(["train", *argv]))


def cmd_train(args: argparse.Namespace) -> int:
    from optix_core.runs import RunError

    check_at_least("--max-windows", args.max_windows, 1)
    check_at_least("--max-steps", args.max_steps, 1)
    check_at_least("--seed", args.seed, 0)
    check_at_least("--selection-episodes", args.selection_episodes, 1)
    check_rollout_args(args)
    if args.no_early_stop and not args.resume and not (args.max_steps or args.max_windows):
        raise UsageError(
            "--no-early-stop needs --max-steps or --max-windows: a budget to train for"
        )
    if args.selection_share is not None and not args.selection_share > 0:
        raise UsageError(f"--selection-share must be > 0, got {args.selection_share}")
    try:
        if args.resume:
            return _resume(args)
        return _start(args)
    except RunError as exc:
        raise UsageError(str(exc)) from None


def _start(args: argparse.Namespace) -> int:
    from optix_core.registry import env_spec, reward_threshold, sets_no_time_limit
    from optix_core.runs import TrainConfig, new_run_dir

    file_hp = _hp_file(args) if args.hp_file else {}
    if not args.env:
        raise UsageError("train needs an environment id (optix train CartPole-v1) or --resume RUN")
    env_kwargs = parse_hyperparams(args.env_kwargs, "--env-kwarg")
    spec = resolve_spec(args.env, args.algo, args.backend, env_kwargs)
    defaults, rollout = spec.settings(args.env)
    n_envs, window_size = rollout_size(args, rollout)
    config = TrainConfig(
        env_id=args.env,
        algo=spec.name,
        backend=spec.backend,
        device=args.device or "auto",
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(2**31),
        hyperparams={**defaults, **file_hp, **parse_hyperparams(args.hp)},
        n_envs=n_envs,
        window_size=window_size,
        max_windows=args.max_windows,
        max_env_steps=args.max_steps,
        loop=dict(LOOP_DEFAULTS),
        selection_episodes=args.selection_episodes or SELECTION_EPISODES,
        selection_share=args.selection_share or SELECTION_SHARE,
        stop_on_dormant=not args.no_early_stop,
        pipeline_options=pipeline_options(spec, rollout, args.actors, args.ray),
        callbacks=callbacks.requested(args),
        network=spec.network(args.env),
        env_kwargs=env_kwargs,
    )
    agent = _agent(config)  # bad hyperparameters or devices fail before anything is written
    pipeline = _pipeline(config, agent)  # so does an agent the pipeline cannot drive
    _warn_budget_without_learning(config, pipeline.window_steps)
    task = env_spec(args.env, env_kwargs)
    if sets_no_time_limit(task):
        _warn_no_time_limit(args.env)
    solved = reward_threshold(task)
    if solved is not None:
        config.loop["solved_score"] = solved
    if args.tune:  # what the agent says is safe to move while it trains
        config.online_tuning = dict(agent.search_space)
        config.loop.update(TUNING_LOOP)
        if not config.online_tuning:
            raise UsageError(f"{spec.name} ({spec.backend}) declares nothing to tune online")
    run_dir = new_run_dir(Path(args.run_dir), config.env_id, config.algo)
    try:
        watchers = callbacks.build(config.callbacks, run_dir)
    except UsageError:
        pipeline.close()
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing was written but the directory
        raise
    config.save(run_dir)
    settings = _settings_line(spec, args.env, env_kwargs)
    if settings:
        print(settings)
    if solved is not None and config.loop["unsolved_patience"]:
        print(
            f"optix: {args.env} counts as solved at a score of {solved:g}; until the best "
            "policy reaches it, a plateau has to last longer to count as convergence"
        )
    print(
        f"optix: training {config.algo} ({config.backend}) on {config.env_id}, "
        f"seed {config.seed}, run directory {run_dir}",
        flush=True,
    )
    return _train(config, agent, run_dir, pipeline, watchers)


def _warn_no_time_limit(env_id: str) -> None:
    """An environment without a time limit: said, not refused (its episodes may
    well end on their own)."""
    from optix_core.evaluation import EPISODE_STEP_LIMIT

    print(
        f"optix: warning: {env_id} sets no time limit, so an episode lasts until the "
        f"environment ends it; evaluation cuts one at {EPISODE_STEP_LIMIT:,} steps, so a "
        "policy that never ends one makes every judgement that long. Give it a limit with "
        "--env-kwarg max_episode_steps=N",
        file=sys.stderr,
        flush=True,
    )


def _warn_budget_without_learning(config: Any, window_steps: int | None) -> None:
    """--max-steps or --max-windows that end before an off-policy agent first
    learns: said, not refused (a one-window run is a fair smoke test)."""
    budgets = []
    if config.max_env_steps is not None:
        steps = config.max_env_steps
        budgets.append((f"--max-steps {steps:,}", whole_windows(steps, window_steps)))
    if config.max_windows is not None and window_steps:
        steps = config.max_windows * window_steps
        budgets.append((f"--max-windows {config.max_windows:,} ({steps:,} env steps)", steps))
    for budget, steps in budgets:
        problem = budget_without_learning(
            config.algo,
            config.hyperparams,
            config.n_envs,
            budget,
            steps,
            "the run will hand back the policy it started with",
        )
        if problem is not None:
            print(f"optix: warning: {problem}", file=sys.stderr, flush=True)
            return


def _settings_line(spec: AgentSpec, env_id: str, env_kwargs: dict[str, Any]) -> str | None:
    """Whether the algorithm trains on its tuned settings for ``env_id``; where it has
    none but other algorithms of its backend do, which ones (MountainCarContinuous's
    PPO stands still on its defaults, its SAC reaches the flag). Settings tuned on the
    environment as registered may not suit it built with other arguments
    (``continuous=True`` makes LunarLander another task): said."""
    if env_id in spec.presets:
        line = f"optix: {spec.name} uses its tuned settings for {env_id}"
        if env_kwargs:
            from optix_core.runs import env_arguments

            line += f", tuned on it as registered, not with {env_arguments(env_kwargs)}"
        return line
    from optix_core import registry

    acts_alike = set(spec.action_spaces)  # LunarLander's DQN preset is no help to its SAC
    tuned = sorted(
        {
            s.name
            for s in registry.agents()
            if s.backend == spec.backend
            and env_id in s.presets
            and acts_alike & set(s.action_spaces)
        }
    )
    if not tuned:
        return None
    return (
        f"optix: {spec.name} has no tuned settings for {env_id} and trains on its defaults; "
        f"{', '.join(tuned)} {'has' if len(tuned) == 1 else 'have'} them (--algo)"
    )


def _hp_file(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameters of ``--hp-file``; a tune.json also names the environment,
    algorithm, backend and rollout it was tuned for, which fill in what was not given."""
    path = Path(args.hp_file)
    if path.is_dir():
        path = path / "tune.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--hp-file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--hp-file {path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--hp-file {path} holds no JSON object of hyperparameters")
    if "best_params" not in data:
        return data
    algo = data.get("algo")
    if args.algo is not None and algo is not None and args.algo != algo:
        raise UsageError(
            f"--hp-file {path} holds hyperparameters tuned for {algo}, not {args.algo}"
        )
    args.algo = args.algo or algo
    args.backend = args.backend or data.get("backend")
    args.env = args.env or data.get("env_id")
    tuned_on = data.get("env_kwargs") or {}  # --env-kwarg given here goes on top
    args.env_kwargs = [*(f"{k}={json.dumps(v)}" for k, v in tuned_on.items()), *args.env_kwargs]
    for key in ("n_envs", "window_size"):
        value = data.get(key)
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise UsageError(f"--hp-file {path}: {key} must be a whole number >= 1, got {value!r}")
        if getattr(args, key) is None:
            setattr(args, key, value)
    print(
        f"optix: hyperparameters from {path}: trial {data.get('best_trial')} of "
        f"{data.get('env_id')}, score {data.get('best_score')}",
        flush=True,
    )
    return {**data.get("fixed_params", {}), **data["best_params"]}


def _resume(args: argparse.Namespace) -> int:
    from optix_core.runs import TrainConfig, resolve_run_dir

    given = [flag for dest, flag in FIXED_ON_RESUME.items() if _was_given(getattr(args, dest))]
    if given:
        raise UsageError(
            f"--resume continues {args.resume} as it was configured; {', '.join(given)} "
            "would change it (start a new run instead)"
        )
    run_dir = resolve_run_dir(args.resume)
    config = TrainConfig.load(run_dir)
    _check_resumable(run_dir, args)
    if args.max_windows is not None:
        config.max_windows = args.max_windows
    if args.max_steps is not None:
        config.max_env_steps = args.max_steps
    if args.device is not None:
        config.device = args.device
    config.callbacks = {**config.callbacks, **callbacks.requested(args)}  # watched as before
    watchers = callbacks.build(config.callbacks, run_dir)
    agent = _agent(config)
    return _train(config, agent, run_dir, _pipeline(config, agent), watchers, resuming=True)


def _was_given(value: Any) -> bool:
    return value is not None and value is not False and value != []


def _check_resumable(run_dir: Path, args: argparse.Namespace) -> None:
    """A run stopped by Ctrl-C continues as it is; one that finished, only when given
    a budget beyond where it stopped."""
    from optix_core.runs import REPORT

    path = run_dir / REPORT
    if not path.is_file():
        return
    try:
        report = json.loads(path.read_text())
        stopped, windows, steps = report["stop_reason"], report["windows"], report["env_steps"]
    except (ValueError, KeyError, TypeError):
        return  # a damaged report is rewritten when the run ends again
    if stopped.startswith("interrupted"):
        return
    more_windows = args.max_windows is not None and args.max_windows > windows
    more_steps = args.max_steps is not None and args.max_steps > steps
    if stopped.startswith("converged"):
        raise UsageError(
            f"{run_dir} has finished ({stopped}); evaluate it with optix eval {run_dir}"
        )
    if not (more_windows or more_steps):
        raise UsageError(
            f"{run_dir} has finished ({stopped}) after {windows:,} windows and {steps:,} env "
            "steps; give a larger --max-windows or --max-steps to continue it"
        )


def _check_budget_ahead(config: Any, windows: int, env_steps: int, run_dir: Path) -> None:
    """A resume whose budget its run has already reached would stop at once and
    report the run finished: refuse it instead, before a window is trained."""
    reached = [
        f"{flag} {budget:,}"
        for flag, budget, done in (
            ("--max-windows", config.max_windows, windows),
            ("--max-steps", config.max_env_steps, env_steps),
        )
        if budget is not None and done >= budget
    ]
    if reached:
        raise UsageError(
            f"{run_dir} is already at {windows:,} windows and {env_steps:,} env steps, "
            f"so {' and '.join(reached)} would stop it at once; give a larger budget to continue"
        )


def _agent(config: Any) -> Any:
    return build_agent(
        config.algo,
        config.env_id,
        config.backend,
        config.hyperparams,
        config.device,
        config.seed,
        config.network,
        config.env_kwargs,
    )


def _pipeline(config: Any, agent: Any) -> Any:
    """The windows to train on (``registry.window_pipeline``), bound to ``agent`` here,
    so an agent the pipeline cannot drive is one line of bad input before the loop
    starts (and, for a new run, before its directory is made)."""
    from optix_core.registry import RegistryError, registered_agent, window_pipeline

    own = registered_agent(config.algo, config.backend).pipeline
    try:
        pipeline = window_pipeline(
            config.env_id,
            config.n_envs,
            config.window_size,
            config.seed,
            own,
            config.pipeline_options,
            config.env_kwargs,
        )
    except (ValueError, ModuleNotFoundError, ConnectionError, RegistryError) as exc:
        raise UsageError(str(exc)) from None
    try:
        pipeline.bind(agent)
    except ValueError as exc:
        pipeline.close()
        raise UsageError(str(exc)) from None
    return pipeline


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, a container stopping) ends the run as Ctrl-C does: the loop
    reports and stays resumable, and the pipeline stops its workers (an actor-learner's
    actors) instead of leaving them to notice on their own. One stop, one report: later
    TERMs are ignored while the command finishes (a TERM to the process group reaches
    the run twice when a wrapper such as ``uv run`` forwards its own copy a moment
    later); a second Ctrl-C still cuts the report short, and SIGKILL always works."""
    stopping = False

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if not stopping:
            signal.signal(signal.SIGTERM, previous)


def _train(
    config: Any,
    agent: Any,
    run_dir: Path,
    pipeline: Any,
    watchers: list[Any],
    resuming: bool = False,
) -> int:
    from optix_core.checkpoints import CheckpointError
    from optix_core.loop import RLOptimizer, TrainingDivergedError
    from optix_core.optimizers import SPSAOptimizer
    from optix_core.runs import CHECKPOINTS, METRICS, REPORT, MetricsFile
    from optix_core.selection import EvaluationSelection
    from optix_core.types import LoopState

    loop = RLOptimizer(
        agent,
        pipeline,
        checkpoint_dir=run_dir / CHECKPOINTS,
        selection=EvaluationSelection(
            config.env_id,
            config.selection_episodes,
            max_share=config.selection_share,
            env_kwargs=config.env_kwargs,
        ),
        final_eval_episodes=FINAL_EVAL_EPISODES,
        optimizer=SPSAOptimizer.from_search_space(config.online_tuning, seed=config.seed),
        max_episodes=config.max_windows,
        max_env_steps=config.max_env_steps,
        stop_on_dormant=config.stop_on_dormant,
        callbacks=[MetricsFile(run_dir / METRICS), *watchers],
        verbose=True,
        resume=True,  # a new run's directory is empty: "resume" starts it
        **config.loop,
    )
    try:
        try:
            loop.setup()
        except CheckpointError as exc:
            raise UsageError(str(exc)) from None
        if resuming:
            _check_budget_ahead(config, loop.episode, pipeline.env_steps, run_dir)
            config.save(run_dir)  # the new budget, device and watchers; under the run's lock
            episodes = (
                "the interrupted episodes going on"
                if loop.continued_episodes
                else "in new episodes"
            )
            print(f"optix: resuming {run_dir} at window {loop.episode + 1}, {episodes}", flush=True)
        with _sigterm_as_ctrl_c():
            report = loop.run()
    except TrainingDivergedError as exc:
        print(f"optix: error: {exc}")
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while the first one's report was made
        print(
            f"\noptix: interrupted again: stopped without a report. Every finished window "
            f"is checkpointed in {run_dir}; continue with: optix train --resume {run_dir}"
        )
        return 130
    finally:
        pipeline.close()
    print(report.format())
    if report.final_state is LoopState.DORMANT and loop.scheduler.learned_nothing:
        print(
            "optix: the training score never moved from its first value: nothing was learned "
            "(exploration never reached a better return, or these settings do not learn on "
            f"{config.env_id}). A fixed budget trains through the plateau (--max-steps N "
            "--no-early-stop); other settings may learn (--hp, --algo, optix tune)",
            flush=True,
        )
    data = {"env_id": config.env_id, "algo": config.algo, "seed": config.seed, **report.to_dict()}
    tmp = run_dir / (REPORT + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(run_dir / REPORT)
    return 0
