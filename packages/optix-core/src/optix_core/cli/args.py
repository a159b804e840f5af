"""Arguments that several commands share, and turning them into specs and agents.

Importing this module is cheap: the registry loads plugins, never frameworks,
and numpy-heavy modules are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from optix_core import registry
from optix_core.cli.errors import UsageError, usage_errors
from optix_core.specs import AgentSpec

# What --checkpoint names besides a snapshot directory: the registry's two kinds.
CHECKPOINT_KINDS = ("best", "latest")


def add_algorithm_args(parser: argparse.ArgumentParser) -> None:
    """ENV, --algo, --backend, --device, --hp: what to train, as train and tune take it."""
    parser.add_argument("env", nargs="?", help="a gymnasium environment id, e.g. CartPole-v1")
    parser.add_argument("--algo", help="algorithm (default: the backend's preferred one, ppo)")
    parser.add_argument("--backend", help="torch, jax, tf or numpy (default: the preferred one)")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a hyperparameter; VALUE is JSON (3e-4, true, [64, 64]) or True/False/None",
    )


def add_env_kwargs_arg(parser: argparse.ArgumentParser) -> None:
    """--env-kwarg: arguments for every environment the run builds."""
    parser.add_argument(
        "--env-kwarg",
        dest="env_kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument for gymnasium.make, kept for every environment the run builds "
        "(training, judging, optix eval): max_episode_steps=200 gives an environment a time "
        "limit, continuous=true is LunarLander's; VALUE as --hp reads it",
    )


def add_seed_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="random seed (default: drawn and recorded)")


def add_run_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir", default="runs", metavar="DIR", help="where run directories go (default: runs)"
    )


def add_verbose_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="log loop internals")


def add_run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run directory written by optix train")


def add_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|latest|PATH",
        help="the run's best checkpoint (default), its latest, or a snapshot directory "
        "(a path, or a name under RUN/checkpoints such as best-000003)",
    )


def add_actor_args(parser: argparse.ArgumentParser) -> None:
    """--actors and --ray: where an actor-learner algorithm's actors run."""
    parser.add_argument(
        "--actors",
        type=int,
        metavar="N",
        help="actor processes collecting at once (actor-learner algorithms: impala)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="run the actors on Ray: join the cluster at ADDRESS, or with no ADDRESS "
        "(auto) the running cluster, starting a local one if there is none",
    )


def add_rollout_args(parser: argparse.ArgumentParser) -> None:
    """--n-envs and --window-size: the rollout (Stable-Baselines3's n_envs and n_steps)."""
    parser.add_argument(
        "--n-envs",
        type=int,
        metavar="N",
        help="environments stepped together (default: the algorithm's preset for ENV, else "
        "its own)",
    )
    parser.add_argument(
        "--window-size",
        type=int,
        metavar="STEPS",
        help="steps of each environment in a window, what the agent learns from at once "
        "(n_steps in Stable-Baselines3's A2C and PPO; default: the preset's, else the "
        "algorithm's)",
    )


def check_rollout_args(args: argparse.Namespace) -> None:
    check_at_least("--n-envs", args.n_envs, 1)
    check_at_least("--window-size", args.window_size, 1)


def rollout_size(args: argparse.Namespace, rollout: dict[str, int]) -> tuple[int, int]:
    """(n_envs, window_size): the flags where given, else the preset's rollout, else
    one environment and 2048 steps."""
    return (
        args.n_envs or rollout.get("n_envs", 1),
        args.window_size or rollout.get("window_size", 2048),
    )


def pipeline_options(
    spec: AgentSpec, rollout: dict[str, int], actors: int | None = None, ray: str | None = None
) -> dict[str, Any]:
    """The options of the algorithm's own pipeline (AgentSpec.pipeline): its rollout's
    keys beyond ``n_envs`` and ``window_size`` (``n_actors``, ...), the number of
    actors ``--actors`` overriding, and the executor (``--ray``); none for an
    algorithm without one, which refuses ``--actors`` and ``--ray``."""
    if spec.pipeline is None:
        if actors is not None or ray is not None:
            raise UsageError(
                f"--actors and --ray are for actor-learner algorithms (impala); "
                f"{spec.name} ({spec.backend}) trains in one process"
            )
        return {}
    check_at_least("--actors", actors, 1)
    options = {k: v for k, v in rollout.items() if k not in ("n_envs", "window_size")}
    if actors is not None:
        options["n_actors"] = actors
    if ray is not None:
        options["executor"] = "ray"
        options["address"] = ray
    return options


def budget_without_learning(
    algo: str, hyperparams: dict[str, Any], n_envs: int, budget: str, steps: int, waste: str
) -> str | None:
    """What is wrong with a budget of ``steps`` env steps (``budget``, as the user
    gave it) that ends before an off-policy agent's first update, so trains
    nothing (rl-zoo's Pendulum TD3 collects 10,000 random steps first); None
    when it learns. ``waste`` says what would be lost."""
    from optix_core.off_policy.schedule import first_update

    starts, train_freq = hyperparams.get("learning_starts"), hyperparams.get("train_freq")
    if not isinstance(starts, int) or not isinstance(train_freq, int) or train_freq < 1:
        return None  # an on-policy agent, or settings the agent itself refuses
    first = first_update(starts, train_freq, n_envs)
    if steps >= first:
        return None
    return (
        f"{budget} ends before {algo} first learns, after {first:,} env steps "
        f"(learning_starts {starts:,}, train_freq {train_freq:,}): {waste}; "
        "give a larger budget, or a smaller --hp learning_starts"
    )


def whole_windows(steps: int, window_steps: int | None) -> int:
    """The env steps a budget of ``steps`` trains: the loop finishes the window
    that reaches them."""
    return -(-steps // window_steps) * window_steps if window_steps else steps


def check_at_least(flag: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be >= {minimum}, got {value}")


def resolve_spec(
    env_id: str,
    algo: str | None,
    backend: str | None,
    env_kwargs: dict[str, Any] | None = None,
) -> AgentSpec:
    """The AgentSpec that ``--algo``/``--backend`` ask for on ``env_id``'s action space
    (built with ``env_kwargs``); without ``--backend``, the backend of ``env_id``'s
    family first where it names one and offers the algorithm (the agents its own
    pipeline drives: jax for ``gymnax:``)."""
    try:
        kind = registry.action_space_kind(registry.env_spaces(env_id, env_kwargs)[1])
        family = registry.environment_family(env_id)
        if backend is None and family is not None and family.backend:
            try:
                return _find(kind, algo, family.backend)
            except registry.RegistryError:
                pass  # the family's backend does not offer it; another may
        return _find(kind, algo, backend)
    except registry.RegistryError as exc:
        raise UsageError(str(exc)) from None


def _find(kind: str, algo: str | None, backend: str | None) -> AgentSpec:
    if algo is None:
        return registry.default_algorithm(kind, backend=backend)
    return registry.find_agent(algo, kind, backend)


# Python's spelling of the JSON words, as rl-zoo's ``--hyperparams use_sde:True`` has it.
PYTHON_WORDS = {"True": True, "False": False, "None": None}


def parse_hyperparams(pairs: list[str], flag: str = "--hp") -> dict[str, Any]:
    """``--hp KEY=VALUE`` pairs (or ``flag``'s); values are JSON (or True, False,
    None) where they parse, strings otherwise."""
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {pair!r}")
        try:
            params[key] = PYTHON_WORDS[raw] if raw in PYTHON_WORDS else json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def build_agent(
    algo: str,
    env_id: str,
    backend: str,
    hyperparams: dict[str, Any],
    device: str,
    seed: int,
    network: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The registered agent (``network``: its factory's options, a preset's; the
    spaces of ``env_id`` built with ``env_kwargs``), with bad hyperparameters or
    devices as a UsageError."""
    from optix_core.hyperparams import HyperparamError
    from optix_core.types import HyperparamSet

    try:
        return registry.make_agent(
            algo,
            env_id,
            backend=backend,
            hyperparams=HyperparamSet(params=dict(hyperparams)),
            device=device,
            seed=seed,
            network=network,
            env_kwargs=env_kwargs,
        )
    except (registry.RegistryError, HyperparamError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def load_run(path: str) -> tuple[Path, Any]:
    """A run directory and its ``TrainConfig``, or a UsageError saying what is wrong.
    Only reads: a run that is still training is neither locked nor changed."""
    from optix_core.runs import RunError, TrainConfig, resolve_run_dir

    with usage_errors(RunError):
        run_dir = resolve_run_dir(path)
        return run_dir, TrainConfig.load(run_dir)


def checkpoint_source(run_dir: Path, which: str) -> str | Path:
    """What ``--checkpoint`` names, checked before an agent is built: "best" or
    "latest" when the run has such a snapshot, else the snapshot directory."""
    from optix_core.checkpoints import MANIFEST, CheckpointRegistry
    from optix_core.runs import CHECKPOINTS

    if which in CHECKPOINT_KINDS:
        directory = run_dir / CHECKPOINTS
        if not directory.is_dir() or not CheckpointRegistry(directory).snapshots(which):
            raise UsageError(f"{run_dir} has no {which} checkpoint yet")
        return which
    path = Path(which)
    if not path.exists() and (run_dir / CHECKPOINTS / which).exists():
        path = run_dir / CHECKPOINTS / which
    if not (path / MANIFEST).is_file():
        raise UsageError(
            f"--checkpoint {which} is neither best, latest nor a checkpoint directory "
            f"(one holding {MANIFEST})"
        )
    return path


def restore_checkpoint(agent: Any, run_dir: Path, source: str | Path) -> dict[str, Any]:
    """Load ``checkpoint_source``'s snapshot into ``agent``, verified against its
    hashes; return its manifest (with ``path``). Never takes the writer's lock."""
    from optix_core.checkpoints import CheckpointError, CheckpointRegistry
    from optix_core.runs import CHECKPOINTS

    if isinstance(source, str):
        manifest = CheckpointRegistry(run_dir / CHECKPOINTS).restore(agent, kind=source)
        if manifest is None:
            raise UsageError(f"{run_dir} has no usable {source} checkpoint: every one was refused")
        return manifest
    with usage_errors(CheckpointError):
        try:
            manifest = CheckpointRegistry(source.parent).load(agent, source)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:  # another run's weights
            raise UsageError(f"cannot load {source} into this run's agent: {exc}") from None
    return {**manifest, "path": str(source)}
