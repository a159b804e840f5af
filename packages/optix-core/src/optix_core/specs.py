"""What plugins register: descriptions of agents, evaluators, callbacks, backends and
environment families.

Every callable is named by a ``"module:attribute"`` string and imported only
when used, so listing what is installed never imports a framework.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

# The kinds of action space an AgentSpec may declare: gymnasium's Discrete,
# Box, MultiDiscrete and MultiBinary.
ACTION_SPACES = ("discrete", "continuous", "multi_discrete", "multi_binary")


def load_object(reference: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{reference!r} is not a 'module:attribute' reference")
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class AgentSpec:
    """An algorithm on one backend.

    ``factory`` is called as ``factory(observation_space, action_space, *,
    hyperparams=None, device="auto", seed=None)`` and returns a ``BaseAgent``
    with a default network for those spaces. ``search_space`` is in
    TrialOrchestrator's format (``{"learning_rate": ("log_float", 1e-4, 3e-3)}``).
    ``rollout`` suggests how to collect its experience: ``n_envs`` (parallel
    environments) and ``window_size`` (steps per environment per window).
    ``presets`` holds tuned settings for particular environments, as
    rl-baselines3-zoo keeps them: ``{"Pendulum-v1": {"hyperparams": {...},
    "rollout": {...}, "network": {...}}}``, each overriding ``defaults`` and
    ``rollout`` for that environment id (``settings``); ``network``, where
    given, are keyword arguments of the factory for that environment's
    default network (the zoo's ``net_arch`` as ``{"hidden": [64, 64]}``;
    ``network``). ``optix train`` and ``optix tune`` use them.
    ``pipeline``, optional, is the algorithm's own window pipeline (an
    actor-learner's actors), ``"module:callable"`` called as ``pipeline(env_id,
    n_envs, window_size, seed, **options)`` with the options ``optix train``'s
    ``--actors`` and ``--ray`` give (``n_actors``, ``executor``, ``address``)
    and, where ``--env-kwarg`` gives some, ``env_kwargs`` for every environment
    it builds (a pipeline that does not take them is named when they are given);
    ``rollout`` may then hold ``n_actors``.
    """

    name: str
    backend: str
    factory: str
    action_spaces: tuple[str, ...]
    on_policy: bool = True
    defaults: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, tuple] = field(default_factory=dict)
    summary: str = ""
    rollout: dict[str, int] = field(default_factory=dict)
    presets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    pipeline: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_spaces", tuple(self.action_spaces))
        unknown = set(self.action_spaces) - set(ACTION_SPACES)
        if unknown or not self.action_spaces:
            raise ValueError(
                f"AgentSpec {self.name!r}: action_spaces must be a non-empty subset of "
                f"{ACTION_SPACES}, got {self.action_spaces}"
            )
        for name in ("factory", "pipeline"):
            reference = getattr(self, name)
            if reference is not None and ":" not in reference:
                raise ValueError(f"AgentSpec {self.name!r}: {name} must be 'module:callable'")
        for env_id, preset in self.presets.items():
            unknown = set(preset) - {"hyperparams", "rollout", "network"}
            if unknown:
                raise ValueError(
                    f"AgentSpec {self.name!r}: preset {env_id!r} may hold only "
                    f"'hyperparams', 'rollout' and 'network', got {sorted(unknown)}"
                )
            strange = set(preset.get("hyperparams", {})) - set(self.defaults)
            if self.defaults and strange:
                raise ValueError(
                    f"AgentSpec {self.name!r}: preset {env_id!r} sets unknown "
                    f"hyperparameters {sorted(strange)}"
                )

    def settings(self, env_id: str) -> tuple[dict[str, Any], dict[str, int]]:
        """The hyperparameters and rollout to train on ``env_id`` with: the
        defaults, overridden by that environment's preset where there is one."""
        preset = self.presets.get(env_id, {})
        return (
            {**self.defaults, **preset.get("hyperparams", {})},
            {**self.rollout, **preset.get("rollout", {})},
        )

    def network(self, env_id: str) -> dict[str, Any]:
        """The factory's keyword arguments for ``env_id``'s network: its preset's
        ``network``, or none (the factory's default)."""
        return dict(self.presets.get(env_id, {}).get("network", {}))

    def load_factory(self) -> Any:
        return load_object(self.factory)


@dataclass(frozen=True)
class EvaluatorSpec:
    """A scorer for windows of experience; ``factory`` builds a ``BaseEvaluator``."""

    name: str
    factory: str
    summary: str = ""


@dataclass(frozen=True)
class CallbackSpec:
    """A loop callback that ``optix train`` offers by name.

    ``factory`` builds the ``LoopCallback``; ``optix train`` calls it as
    ``factory(run_dir=RUN_DIR)``, adding ``{option: VALUE}`` when the user gives
    a value. ``optix train --callback NAME[=VALUE]`` reaches every registered
    callback; with ``flag`` it is also ``--NAME`` (``--dashboard``), and with
    ``option`` that flag takes the value (``--wandb PROJECT``; optional where
    ``option_required`` is false: ``--tensorboard [DIR]``). ``requires`` names
    the modules the callback imports when it is built and ``extra`` what to
    install for them, so a missing one is one line before the run starts.
    """

    name: str
    factory: str
    summary: str = ""
    flag: bool = False
    option: str | None = None
    option_required: bool = True
    requires: tuple[str, ...] = ()
    extra: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """A framework backend.

    ``list_devices`` returns device names (``["cpu", "cuda:0"]``),
    ``resolve_device`` maps ``"auto"`` or a name to the device to use and
    raises ``ValueError`` for one that is not there, and ``seed`` seeds the
    framework's random generators. ``export``, optional, writes an agent's
    deterministic policy as a model that runs without optix (``optix
    export``): ``export(agent, path, format, observation_space)`` with
    ``format`` "onnx" or "torchscript" (the formats a backend offers are its
    own), returning ``{"path", "format", "inputs": [{"name", "shape",
    "dtype"}], "output": {...}}``, and raising ``ValueError`` with a one-line
    reason for a policy or format it cannot export. All are
    ``"module:callable"`` strings, imported only when called.
    """

    name: str
    distribution: str
    list_devices: str
    resolve_device: str
    seed: str
    summary: str = ""
    export: str | None = None

    def __post_init__(self) -> None:
        if self.export is not None and ":" not in self.export:
            raise ValueError(f"BackendSpec {self.name!r}: export must be 'module:callable'")


@dataclass(frozen=True)
class EnvironmentSpec:
    """A family of environments outside gymnasium's registry, reached by ids
    ``prefix:Name`` (``gymnax:CartPole-v1``), so that every command and pipeline
    that takes an environment id takes these too.

    ``make`` is called as ``make(name, **kwargs)`` with the id's name part and
    returns a ``gymnasium.Env``; it raises ``ValueError`` with a one-line reason
    for a name the family does not have. ``pipeline``, optional, builds the
    family's own window pipeline (a compiled one, say) as ``pipeline(env_id,
    n_envs, window_size, seed)``, with ``env_kwargs=`` where ``--env-kwarg``
    gives some; ``optix train`` uses it instead of stepping
    the environments from Python. ``extra`` is what to install when the
    family's library is missing (``optix-jax[gymnax]``). ``backend`` is the
    backend whose agents that pipeline drives; ``optix train`` and ``optix
    tune`` pick it when no ``--backend`` is given. ``evaluate``, optional,
    plays evaluation episodes the family's own way (compiled, say) as
    ``evaluate(agent, env_id, episodes, seed, deterministic)``, returning an
    ``optix_core.evaluation.PolicyEvaluation``, or None for an agent it cannot
    play (``evaluate_policy`` then steps the environments from Python);
    ``evaluate_policy`` asks it first for the family's ids given without
    ``env_kwargs``. The callables are ``"module:callable"`` strings, imported
    only when used.
    """

    prefix: str
    distribution: str
    make: str
    pipeline: str | None = None
    extra: str = ""
    summary: str = ""
    backend: str = ""
    evaluate: str | None = None

    def __post_init__(self) -> None:
        if not self.prefix or ":" in self.prefix:
            raise ValueError(
                f"EnvironmentSpec prefix must be a non-empty name without ':', got {self.prefix!r}"
            )
        for name in ("make", "pipeline", "evaluate"):
            reference = getattr(self, name)
            if reference is not None and ":" not in reference:
                raise ValueError(
                    f"EnvironmentSpec {self.prefix!r}: {name} must be 'module:callable'"
                )
