"""The registry's public face: what is installed, and building agents and environments from it."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from optix_core.plugins import get_registry
from optix_core.specs import (
    AgentSpec,
    BackendSpec,
    CallbackSpec,
    EnvironmentSpec,
    EvaluatorSpec,
    load_object,
)

if TYPE_CHECKING:
    import gymnasium as gym
    from gymnasium.envs.registration import EnvSpec

    from optix_core.agent import BaseAgent
    from optix_core.types import HyperparamSet

BACKEND_PREFERENCE = ("torch", "jax", "tf")
# The order ``default_algorithm`` tries algorithms in, then by name: PPO serves both
# kinds of action space; SAC (continuous) and DQN (discrete) are the usual next choices.
ALGORITHM_PREFERENCE = ("ppo", "sac", "dqn")


class RegistryError(LookupError):
    """A request that no installed plugin can serve."""


def agents() -> list[AgentSpec]:
    """Every registered agent, in preference order of backend, then by name."""
    specs = [r.spec for r in get_registry().registered(AgentSpec)]
    return sorted(specs, key=lambda s: (s.name, _backend_rank(s.backend)))


def backends() -> list[BackendSpec]:
    return [r.spec for r in get_registry().registered(BackendSpec)]


def evaluators() -> list[EvaluatorSpec]:
    return [r.spec for r in get_registry().registered(EvaluatorSpec)]


def callbacks() -> list[CallbackSpec]:
    return [r.spec for r in get_registry().registered(CallbackSpec)]


def environments() -> list[EnvironmentSpec]:
    """Every registered environment family, by prefix."""
    specs = [r.spec for r in get_registry().registered(EnvironmentSpec)]
    return sorted(specs, key=lambda s: s.prefix)


def environment_family(env_id: str) -> EnvironmentSpec | None:
    """The family that serves ``env_id`` (``gymnax:CartPole-v1``), or None for an id
    gymnasium makes itself."""
    prefix, sep, _ = env_id.partition(":")
    if not sep:
        return None
    return next((s for s in environments() if s.prefix == prefix), None)


def window_pipeline(
    env_id: str,
    n_envs: int,
    window_size: int,
    seed: int | None,
    pipeline: str | None = None,
    options: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The pipeline that collects training windows on ``env_id``: the algorithm's own
    where its AgentSpec names one (``pipeline``, given ``options``: optix-distributed's
    actors for impala), else the environment family's own (optix-jax's compiled
    pipeline for ``gymnax:`` ids), else gymnasium's vector environments stepped from
    Python (``VectorBatchPipeline``). ``env_kwargs`` go to every environment it
    builds (``gymnasium.make``'s: ``max_episode_steps``, the environment's own)."""
    options = dict(options or {})
    if env_kwargs:
        options["env_kwargs"] = dict(env_kwargs)
    if pipeline is not None:
        return _pipeline_factory(pipeline, options)(env_id, n_envs, window_size, seed, **options)
    unused = sorted(set(options) - {"env_kwargs"})
    if unused:
        raise RegistryError(f"pipeline options {unused} need an algorithm's own pipeline")
    family = environment_family(env_id)
    if family is None or family.pipeline is None:
        from optix_core.pipeline import VectorBatchPipeline

        return VectorBatchPipeline(
            env_id=env_id, n_envs=n_envs, window_size=window_size, seed=seed, **options
        )
    return _pipeline_factory(family.pipeline, options)(env_id, n_envs, window_size, seed, **options)


def _pipeline_factory(path: str, options: dict[str, Any]) -> Any:
    """The pipeline factory at ``path``, once it is known to take ``options``: one it
    does not take is named here, not a TypeError from inside it."""
    factory = load_object(path)
    try:
        inspect.signature(factory).bind_partial(None, 1, 1, None, **options)
    except TypeError:
        what = "environment arguments" if "env_kwargs" in options else f"options {sorted(options)}"
        raise RegistryError(f"the pipeline {path} does not take {what}") from None
    return factory


def provider(spec: Any) -> str:
    """The distribution that registered ``spec``."""
    for registered in get_registry().items[type(spec)].values():
        if registered.spec is spec:
            return registered.distribution
    raise RegistryError(f"{spec!r} is not registered")


def action_space_kind(space: gym.Space) -> str:
    """The kind of ``space`` in the vocabulary of ``AgentSpec.action_spaces``:
    'discrete', 'continuous' (Box), 'multi_discrete' or 'multi_binary'."""
    import gymnasium as gym

    kinds = {
        gym.spaces.Discrete: "discrete",
        gym.spaces.Box: "continuous",
        gym.spaces.MultiDiscrete: "multi_discrete",
        gym.spaces.MultiBinary: "multi_binary",
    }
    for cls, kind in kinds.items():
        if isinstance(space, cls):
            return kind
    raise RegistryError(
        f"action space {space} is not supported: optix agents act on Discrete, Box, "
        "MultiDiscrete or MultiBinary spaces"
    )


def registered_agent(name: str, backend: str) -> AgentSpec:
    """The spec registered as ``name`` on ``backend`` (any action space)."""
    for spec in agents():
        if spec.name == name and spec.backend == backend:
            return spec
    raise RegistryError(f"no agent {name!r} on backend {backend!r} is installed")


def find_agent(name: str, action_kind: str, backend: str | None = None) -> AgentSpec:
    """The spec that serves ``name`` for this kind of action space.

    With ``backend=None`` the preferred installed backend wins: torch, jax,
    tf, then framework-free ones.
    """
    specs = agents()
    named = [s for s in specs if s.name == name]
    if not named:
        known = ", ".join(sorted({s.name for s in specs})) or "none"
        raise RegistryError(
            f"unknown algorithm {name!r}; installed: {known}. "
            "More come with optix-torch, optix-tf or optix-jax (pip install optix-torch)"
        )
    if backend is not None:
        named = [s for s in named if s.backend == backend]
        if not named:
            offered = ", ".join(sorted(s.backend for s in specs if s.name == name))
            installed = next((b for b in backends() if b.name == backend), None)
            if installed is not None:
                raise RegistryError(
                    f"the {backend!r} backend ({installed.distribution}) does not offer "
                    f"{name!r}; it is offered by: {offered}. Choose one of those backends"
                )
            raise RegistryError(
                f"algorithm {name!r} has no {backend!r} backend installed; it is offered by: "
                f"{offered}. Install optix-{backend} or choose another backend"
            )
    serving = [s for s in named if action_kind in s.action_spaces]
    if not serving:
        supported = sorted({a for s in named for a in s.action_spaces})
        raise RegistryError(
            f"algorithm {name!r} supports {' and '.join(supported)} action spaces, "
            f"not {action_kind}; choose an algorithm for {action_kind} actions "
            "(see `optix list`)"
        )
    return min(serving, key=lambda s: _backend_rank(s.backend))


def default_algorithm(action_kind: str, *, backend: str | None = None) -> AgentSpec:
    """What ``optix train`` uses without ``--algo``.

    PPO where a backend offers it for this action space; otherwise the first
    fitting agent in ``ALGORITHM_PREFERENCE`` (ppo, sac, dqn), then by name,
    rather than whatever sorts first alphabetically (a2c). Without ``backend``
    the preferred installed backend decides among the rest (torch, jax, tf,
    then framework-free); with one, only that backend's agents count, so
    ``--backend torch`` alone means PPO on torch.
    """
    specs = agents() if backend is None else _offered_by(backend)
    fitting = [s for s in specs if action_kind in s.action_spaces]
    if not fitting:
        if backend is None:
            raise RegistryError(f"no installed agent supports {action_kind} action spaces")
        offered = ", ".join(f"{s.name} ({','.join(s.action_spaces)})" for s in specs)
        raise RegistryError(
            f"no {backend!r} agent supports {action_kind} action spaces; {backend!r} offers: "
            f"{offered}. Choose another backend (see `optix list`)"
        )
    return min(
        fitting,
        key=lambda s: (s.name != "ppo", _backend_rank(s.backend), _algorithm_rank(s.name), s.name),
    )


def _offered_by(backend: str) -> list[AgentSpec]:
    """The agents of one backend, by name; an error naming what is installed if none."""
    specs = agents()
    offered = sorted((s for s in specs if s.backend == backend), key=lambda s: s.name)
    if not offered:
        installed = ", ".join(sorted({s.backend for s in specs})) or "none"
        raise RegistryError(
            f"no {backend!r} backend installed; installed: {installed}. "
            f"Install optix-{backend} or choose another backend"
        )
    return offered


def make_agent(
    name: str,
    env: Any,
    backend: str | None = None,
    hyperparams: HyperparamSet | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
    network: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> BaseAgent:
    """Build a registered agent with its default network for ``env``'s spaces.

    ``env`` is an environment id (built with ``env_kwargs``), a ``gymnasium.Env``
    or a vector environment. ``network`` holds keyword arguments for the
    factory's default network (a preset's ``network``, ``AgentSpec.network``:
    ``{"hidden": [64, 64]}``).
    """
    from optix_core.types import HyperparamSet

    observation_space, action_space = env_spaces(env, env_kwargs)
    spec = find_agent(name, action_space_kind(action_space), backend)
    if isinstance(hyperparams, dict):
        hyperparams = HyperparamSet(params=dict(hyperparams))
    if hyperparams is not None:
        merged = {**spec.defaults, **hyperparams.params}
        hyperparams = HyperparamSet(params=merged, episode_id=hyperparams.episode_id)
    factory = spec.load_factory()
    options = dict(network or {})
    try:  # a network option the factory does not take is named, not a TypeError deep inside
        inspect.signature(factory).bind_partial(observation_space, action_space, **options)
    except TypeError:
        raise RegistryError(
            f"{spec.name} ({spec.backend}): its factory {spec.factory} does not take the "
            f"network options {sorted(options)}"
        ) from None
    return factory(
        observation_space, action_space, hyperparams=hyperparams, device=device, seed=seed,
        **options,
    )  # fmt: skip


def env_spaces(env: Any, env_kwargs: dict[str, Any] | None = None) -> tuple[gym.Space, gym.Space]:
    """The single-environment observation and action spaces of ``env``: an
    environment, or an id built with ``env_kwargs`` (``continuous=True`` gives
    LunarLander a Box of actions)."""
    if isinstance(env, str):
        probe = make_env(env, **(env_kwargs or {}))
        try:
            return probe.observation_space, probe.action_space
        finally:
            probe.close()
    if hasattr(env, "single_observation_space"):
        return env.single_observation_space, env.single_action_space
    return env.observation_space, env.action_space


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """The environment ``env_id`` names, with an error that says what went wrong.

    ``prefix:Name`` ids go to the registered family of that prefix
    (``gymnax:CartPole-v1`` to optix-jax's); any other id, gymnasium's own
    ``module:Name`` form included, to ``gymnasium.make``.
    """
    family = environment_family(env_id)
    if family is not None:
        return _make_family_env(family, env_id, kwargs)
    import gymnasium as gym

    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise RegistryError(f"unknown environment {env_id!r}: {exc}") from None
    except TypeError as exc:
        if not kwargs:
            raise
        raise _arguments_refused(env_id, kwargs, exc) from None
    except ModuleNotFoundError as exc:
        # gymnasium imports the prefix of "module:Name" ids, re-raising a failure anew.
        prefix, sep, _ = env_id.partition(":")
        missing = getattr(exc.__cause__, "name", None) or exc.name or ""
        if not sep or not missing or not (prefix + ".").startswith(missing + "."):
            raise
        installed = ", ".join(f"{s.prefix} ({s.distribution})" for s in environments())
        raise RegistryError(
            f"unknown environment family {prefix!r} in {env_id!r}; installed families: "
            f"{installed or 'none'} (nor is {prefix!r} a module that registers gymnasium "
            "environments)"
        ) from None


def env_spec(env_id: str, env_kwargs: dict[str, Any] | None = None) -> EnvSpec | None:
    """gymnasium's ``EnvSpec`` of the environment ``env_id`` names, built with
    ``env_kwargs`` and read from the environment itself (so ``module:Name`` ids
    and families resolve as in training), or None where it has none (an
    environment family's may not)."""
    env = make_env(env_id, **(env_kwargs or {}))
    try:
        return getattr(env, "spec", None)
    finally:
        env.close()


def reward_threshold(spec: EnvSpec | None) -> float | None:
    """The score at which the environment counts its task as solved (gymnasium's
    ``spec.reward_threshold``), or None where it names none."""
    threshold = getattr(spec, "reward_threshold", None)
    return None if threshold is None else float(threshold)


def sets_no_time_limit(spec: EnvSpec | None) -> bool:
    """Whether gymnasium registers the environment without a time limit
    (``max_episode_steps``), so an episode lasts until the environment ends it
    (CliffWalking-v1). ALE's Atari environments limit their episodes themselves,
    in frames (``max_num_frames_per_episode``)."""
    return (
        spec is not None
        and spec.max_episode_steps is None
        and "max_num_frames_per_episode" not in spec.kwargs
    )


def _make_family_env(family: EnvironmentSpec, env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    name = env_id.partition(":")[2]
    try:
        return load_object(family.make)(name, **kwargs)
    except ModuleNotFoundError as exc:
        extra = family.extra or family.distribution
        raise RegistryError(
            f"{env_id!r} needs {exc.name}, which is not installed: pip install '{extra}'"
        ) from None
    except ValueError as exc:
        raise RegistryError(f"unknown environment {env_id!r}: {exc}") from None
    except TypeError as exc:
        if not kwargs:
            raise
        raise _arguments_refused(env_id, kwargs, exc) from None


def _arguments_refused(env_id: str, kwargs: dict[str, Any], exc: TypeError) -> RegistryError:
    """A TypeError from building ``env_id`` with ``kwargs``, as the bad input it is."""
    return RegistryError(f"{env_id} does not take the arguments {kwargs}: {exc}")


def _algorithm_rank(name: str) -> int:
    if name in ALGORITHM_PREFERENCE:
        return ALGORITHM_PREFERENCE.index(name)
    return len(ALGORITHM_PREFERENCE)


def _backend_rank(backend: str) -> int:
    if backend in BACKEND_PREFERENCE:
        return BACKEND_PREFERENCE.index(backend)
    return len(BACKEND_PREFERENCE)
