"""The ``optix`` command.

``list``, ``plugins`` and ``backends`` read the registry and never import a
framework or numpy; ``train`` and ``eval`` build agents. Bad input is one
line on stderr and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from optix_core import plugins, registry
from optix_core.specs import AgentSpec
from optix_core.tune_cli import add_tune_parser

EXIT_USAGE = 2

# How `optix train` runs the loop. RLOptimizer's own defaults are tensor-optix's
# (doubling up to 100 windows, 20 evaluations without improvement); a command
# that should end on its own within minutes backs off less far.
LOOP_DEFAULTS: dict[str, Any] = {
    "base_interval": 1,
    "backoff_factor": 2.0,
    "max_interval_episodes": 8,
    "plateau_threshold": 5,
    "dormant_threshold": 10,
    "score_smoothing": 2,
    "noise_k": 2.0,
    "score_window": 20,
}
SELECTION_EPISODES = 5  # deterministic episodes that score each checkpoint candidate
SELECTION_SEED = 1_000_000  # selection and report episodes never share seeds
REPORT_SEED = 2_000_000


class UsageError(Exception):
    """Bad input: reported as one line and exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="optix: %(levelname)s: %(message)s",
    )
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"optix: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except plugins.PluginError as exc:
        print(f"optix: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optix", description="Train until converged, keep the best policy."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="algorithms of every installed plugin")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("plugins", help="installed plugins as JSON, with load errors")
    p.set_defaults(handler=cmd_plugins)

    p = sub.add_parser("backends", help="installed backends, versions and devices")
    p.add_argument("--no-devices", action="store_true", help="skip probing each framework")
    p.set_defaults(handler=cmd_backends)

    p = sub.add_parser("train", help="train on an environment until converged")
    p.add_argument("env", nargs="?", help="a gymnasium environment id, e.g. CartPole-v1")
    p.add_argument("--algo", help="algorithm (default: ppo where installed, else cem)")
    p.add_argument("--backend", help="torch, jax, tf or numpy (default: the preferred one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, help="random seed (default: drawn and recorded)")
    p.add_argument("--max-episodes", type=int, help="stop after this many windows")
    p.add_argument("--run-dir", default="runs", help="where run directories go (default: runs)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in directory RUN")
    p.add_argument(
        "--hp", action="append", default=[], metavar="KEY=VALUE", help="set a hyperparameter"
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="tune hyperparameters online with SPSA over the algorithm's search space",
    )
    p.add_argument("--verbose", action="store_true", help="log loop internals")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's best checkpoint")
    p.add_argument("run", help="a run directory written by optix train")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=REPORT_SEED)
    p.set_defaults(handler=cmd_eval)

    add_tune_parser(sub)
    return parser


# ---- list, plugins, backends -------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    specs = registry.agents()
    rows = [
        [
            s.name,
            s.backend,
            ",".join(s.action_spaces),
            "on" if s.on_policy else "off",
            s.summary,
            registry.provider(s),
        ]
        for s in specs
    ]
    print(_table(["algorithm", "backend", "actions", "policy", "summary", "plugin"], rows))
    _warn_broken_plugins()
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    reg = plugins.get_registry()
    reg.ensure_loaded()
    print(json.dumps([p.to_dict() for p in reg.plugins], indent=2))
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    rows = []
    for spec in registry.backends():
        dist = next(
            p for p in plugins.get_registry().plugins if p.distribution == spec.distribution
        )
        devices = "" if args.no_devices else _probe_devices(spec.list_devices)
        rows.append([spec.name, spec.distribution, dist.version, devices])
    rows.append(["numpy", "optix-core", _version("optix-core"), "" if args.no_devices else "cpu"])
    print(_table(["backend", "distribution", "version", "devices"], rows))
    return 0


def _probe_devices(reference: str) -> str:
    # Each framework is imported in its own process: torch and tensorflow in one
    # process can abort it (see DESIGN.md), and `optix` itself stays framework-free.
    code = (
        "import json; from optix_core.specs import load_object; "
        f"print(json.dumps(load_object({reference!r})()))"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        )
        return ",".join(json.loads(out.stdout.strip().splitlines()[-1]))
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return f"unavailable ({type(exc).__name__})"


def _warn_broken_plugins() -> None:
    for info in plugins.get_registry().plugins:
        if info.error:
            print(f"optix: plugin {info.name} skipped: {info.error}", file=sys.stderr)


# ---- train and eval ----------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from optix_core.runs import TrainConfig, new_run_dir, resolve_run_dir

    if args.resume:
        run_dir = _existing(resolve_run_dir, args.resume)
        config = TrainConfig.load(run_dir)
        if args.max_episodes is not None:
            config.max_episodes = args.max_episodes
        session = _session(config, run_dir, resume=True)
        print(f"optix: resuming {run_dir} at window {session.loop.episode + 1}")
    else:
        if not args.env:
            raise UsageError(
                "train needs an environment id (optix train CartPole-v1) or --resume RUN"
            )
        config = _new_config(args)
        session = _session(config, None, resume=False)
        run_dir = new_run_dir(Path(args.run_dir), config.env_id, config.algo)
        session.attach(run_dir)
        config.save(run_dir)
        print(
            f"optix: training {config.algo} ({config.backend}) on {config.env_id}, "
            f"seed {config.seed}, run directory {run_dir}"
        )
    return session.train()


def cmd_eval(args: argparse.Namespace) -> int:
    from optix_core.evaluation import evaluate_policy
    from optix_core.runs import CHECKPOINTS, TrainConfig, resolve_run_dir

    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    run_dir = _existing(resolve_run_dir, args.run)
    config = TrainConfig.load(run_dir)
    agent = _build_agent(config)
    from optix_core.checkpoints import CheckpointRegistry

    manifest = CheckpointRegistry(run_dir / CHECKPOINTS).restore(agent, kind="best")
    if manifest is None:
        raise UsageError(f"{run_dir} has no usable checkpoint to evaluate")
    result = evaluate_policy(agent, config.env_id, episodes=args.episodes, seed=args.seed)
    print(f"{config.env_id} {config.algo} ({config.backend}) {manifest['snapshot_id']}: {result}")
    return 0


class _Session:
    """One `optix train`: the agent, pipeline and loop, and the run directory they write."""

    def __init__(self, config: Any, agent: Any, pipeline: Any, loop: Any) -> None:
        self.config, self.agent, self.pipeline, self.loop = config, agent, pipeline, loop
        self.run_dir: Path | None = None
        self.selection_steps = 0

    def attach(self, run_dir: Path) -> None:
        from optix_core.runs import CHECKPOINTS, METRICS, MetricsFile

        self.run_dir = run_dir
        self.loop.checkpoint_dir = run_dir / CHECKPOINTS
        self.loop.add_callback(MetricsFile(run_dir / METRICS))

    def select(self, agent: Any) -> float:
        """Checkpoint score: a deterministic evaluation on episodes of its own.

        Only evaluations that the scheduler credited as an improvement are
        candidates; the others score -inf and cost no environment steps.
        """
        from optix_core.evaluation import evaluate_policy

        if self.loop.scheduler.consecutive_no_improvement != 0:
            return float("-inf")
        seed = SELECTION_SEED + 1000 * self.loop.episode
        result = evaluate_policy(agent, self.config.env_id, SELECTION_EPISODES, seed=seed)
        self.selection_steps += int(result.lengths.sum())
        return result.mean

    def train(self) -> int:
        from optix_core.evaluation import evaluate_policy
        from optix_core.runs import REPORT

        try:
            report = self.loop.run()
        finally:
            self.pipeline.close()
        final = evaluate_policy(self.agent, self.config.env_id, episodes=20, seed=REPORT_SEED)
        extra = {
            "Checkpoint evals": f"{self.selection_steps:,} env steps",
            "Final eval": f"{final} (deterministic, best checkpoint)",
        }
        print(report.format(extra=extra))
        assert self.run_dir is not None
        data = report.to_dict()
        data.update(
            selection_env_steps=self.selection_steps,
            final_eval={"mean": final.mean, "std": final.std, "returns": final.returns.tolist()},
        )
        (self.run_dir / REPORT).write_text(json.dumps(data, indent=2))
        return 0


def _session(config: Any, run_dir: Path | None, resume: bool) -> _Session:
    from optix_core.loop import RLOptimizer
    from optix_core.optimizers import SPSAOptimizer
    from optix_core.pipeline import VectorBatchPipeline
    from optix_core.runs import CHECKPOINTS

    agent = _build_agent(config)
    pipeline = VectorBatchPipeline(
        env_id=config.env_id, n_envs=config.n_envs, window_size=config.window_size, seed=config.seed
    )
    session = _Session(config, agent, pipeline, None)
    session.loop = RLOptimizer(
        agent,
        pipeline,
        checkpoint_dir=run_dir / CHECKPOINTS if run_dir else None,
        checkpoint_score_fn=session.select,
        optimizer=SPSAOptimizer.from_search_space(config.online_tuning, seed=config.seed),
        max_episodes=config.max_episodes,
        verbose=True,
        resume=resume,
        **config.loop,
    )
    if resume:
        assert run_dir is not None
        session.attach(run_dir)
        session.loop.setup()  # restores the loop's state now, so the header can show it
    return session


def _new_config(args: argparse.Namespace) -> Any:
    from optix_core.runs import TrainConfig

    if args.max_episodes is not None and args.max_episodes < 1:
        raise UsageError(f"--max-episodes must be >= 1, got {args.max_episodes}")
    spec = _resolve_spec(args.env, args.algo, args.backend)
    defaults, rollout = spec.settings(args.env)
    if args.env in spec.presets:
        print(f"optix: {spec.name} uses its tuned settings for {args.env}")
    hyperparams = {**defaults, **_parse_hyperparams(args.hp)}
    return TrainConfig(
        env_id=args.env,
        algo=spec.name,
        backend=spec.backend,
        device=args.device,
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(2**31),
        hyperparams=hyperparams,
        n_envs=rollout.get("n_envs", 1),
        window_size=rollout.get("window_size", 2048),
        max_episodes=args.max_episodes,
        loop=dict(LOOP_DEFAULTS),
        online_tuning=dict(spec.search_space) if args.tune else {},
    )


def _resolve_spec(env_id: str, algo: str | None, backend: str | None) -> AgentSpec:
    try:
        _, action_space = registry.env_spaces(env_id)
        kind = registry.action_space_kind(action_space)
        if algo is None and backend is None:
            return registry.default_algorithm(kind)
        if algo is None:
            fitting = [
                s for s in registry.agents() if s.backend == backend and kind in s.action_spaces
            ]
            if not fitting:
                raise registry.RegistryError(f"no {backend!r} agent supports {kind} action spaces")
            return fitting[0]
        return registry.find_agent(algo, kind, backend)
    except registry.RegistryError as exc:
        raise UsageError(str(exc)) from None


def _build_agent(config: Any) -> Any:
    from optix_core.hyperparams import HyperparamError
    from optix_core.types import HyperparamSet

    try:
        return registry.make_agent(
            config.algo,
            config.env_id,
            backend=config.backend,
            hyperparams=HyperparamSet(params=dict(config.hyperparams)),
            device=config.device,
            seed=config.seed,
        )
    except (registry.RegistryError, HyperparamError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _parse_hyperparams(pairs: list[str]) -> dict[str, Any]:
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--hp takes KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _existing(resolve: Any, path: str) -> Path:
    try:
        return resolve(path)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    # Run the canonical module's main: under `python -m`, this file is
    # __main__, and tune_cli imports optix_core.cli as a second copy whose
    # UsageError the copy here would not catch.
    from optix_core.cli import main as _main

    sys.exit(_main())
