"""ConfiguredAgent: what every framework's agent base shares.

An algorithm declares its hyperparameters once (``DEFAULTS``, ``BOUNDS``,
``ONLINE_SEARCH_SPACE``, from ``optix_core.algorithms.config``); this holds
them checked, offers them to the loop's tuners, and writes and reads the
framework-free half of a checkpoint: ``state.json`` with the algorithm's
name, the backend that wrote it, its hyperparameters, the agent's numpy generators and the algorithm's
own counters (``extra_state``). A backend's base (optix-torch's
``TorchAgentBase``, optix-tf's ``TFAgentBase``) adds devices, weights and
optimizer state in its framework.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from optix_core.agent import BaseAgent
from optix_core.hyperparams import Bound, check_hyperparams
from optix_core.types import HyperparamSet

STATE = "state.json"


class ConfiguredAgent(BaseAgent):
    """Hyperparameters checked against ``BOUNDS``, and the ``state.json`` of a checkpoint."""

    algorithm: ClassVar[str] = "agent"
    # The backend whose checkpoints this agent writes and reads ("torch", "tf").
    backend: ClassVar[str] = ""
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    BOUNDS: ClassVar[dict[str, Bound]] = {}
    # What the loop may tune while training (the config module's ONLINE_SEARCH_SPACE).
    ONLINE_SEARCH_SPACE: ClassVar[dict[str, tuple]] = {}
    # Hyperparameters that choose what is built (A2C's optimizer): fixed for the agent's life.
    BUILT_WITH: ClassVar[tuple[str, ...]] = ()
    # Loop settings of this algorithm (the config module's LOOP_HINTS; BaseAgent.loop_hints).
    LOOP_HINTS: ClassVar[dict[str, Any]] = {}

    def init_hyperparams(self, hyperparams: HyperparamSet | dict[str, Any] | None) -> None:
        """``DEFAULTS`` overridden by ``hyperparams``, checked: a bad value is an
        error naming the key and its valid range, before any work starts."""
        if isinstance(hyperparams, HyperparamSet):
            params, episode_id = hyperparams.params, hyperparams.episode_id
        else:
            params, episode_id = (hyperparams or {}), 0
        checked = check_hyperparams({**self.DEFAULTS, **params}, self.BOUNDS, self.algorithm)
        self._hp = HyperparamSet(checked, episode_id)

    # ---- what subclasses declare ------------------------------------------

    def apply_hyperparams(self) -> None:
        """Push hyperparameters into the optimizers; called after every change."""

    def extra_state(self) -> dict[str, Any]:
        """JSON-ready state beyond weights (counters, schedules) for exact resume."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` returned."""

    def save_extra(self, path: Path) -> None:
        """Write files beyond weights (a replay buffer) into the checkpoint."""

    def load_extra(self, path: Path) -> None:
        """Read what ``save_extra`` wrote."""

    # ---- BaseAgent's hyperparameter half ---------------------------------------

    @property
    def loop_hints(self) -> dict[str, Any]:
        return {**super().loop_hints, **self.LOOP_HINTS}

    @property
    def hp(self) -> dict[str, Any]:
        return self._hp.params

    def get_hyperparams(self) -> HyperparamSet:
        return self._hp.copy()

    @property
    def search_space(self) -> dict[str, tuple]:
        """What the loop may tune while training: ``ONLINE_SEARCH_SPACE``."""
        return dict(self.ONLINE_SEARCH_SPACE)

    @property
    def hyperparam_bounds(self) -> dict[str, Bound]:
        """The valid ranges ``set_hyperparams`` checks: ``BOUNDS``."""
        return dict(self.BOUNDS)

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        self._check_built_with(hyperparams.params, "the new hyperparameter set")
        merged = {**self._hp.params, **hyperparams.params}
        self._hp = HyperparamSet(
            check_hyperparams(merged, self.BOUNDS, self.algorithm), hyperparams.episode_id
        )
        self.apply_hyperparams()

    # ---- the checkpoint's state.json -------------------------------------------

    def write_state(
        self, directory: Path, generators: dict[str, np.random.Generator], **fields: Any
    ) -> None:
        """``state.json``: the algorithm, the backend, its hyperparameters, the
        ``generators``' states, ``extra_state()`` and the backend's ``fields``."""
        state = {
            "algorithm": self.algorithm,
            "backend": self.backend,
            **fields,
            "hyperparams": self._hp.to_dict(),
            **{name: g.bit_generator.state for name, g in generators.items()},
            "extra": self.extra_state(),
        }
        (directory / STATE).write_text(json.dumps(state))

    def read_state(self, directory: Path, generators: tuple[str, ...]) -> dict[str, Any]:
        """``state.json`` of a checkpoint of this algorithm written by this
        backend, its generator states checked, before anything is loaded."""
        if not (directory / STATE).is_file():
            raise FileNotFoundError(f"{directory} holds no {self.algorithm} checkpoint")
        state = json.loads((directory / STATE).read_text())
        if state.get("algorithm") != self.algorithm:
            raise ValueError(
                f"{directory} holds a {state.get('algorithm')!r} checkpoint, not {self.algorithm!r}"
            )
        # Checkpoints written before optix-tf existed carry no backend: optix-torch wrote them.
        written_by = state.get("backend", "torch")
        if written_by != self.backend:
            raise ValueError(
                f"{directory} holds a {self.algorithm} checkpoint written by the "
                f"{written_by!r} backend; it loads only into that backend (this agent is "
                f"{self.backend!r}): build the agent with backend={written_by!r}"
            )
        self._check_built_with(
            HyperparamSet.from_dict(state["hyperparams"]).params, f"the checkpoint in {directory}"
        )
        for key in generators:
            probe = np.random.default_rng()
            try:
                probe.bit_generator.state = state.get(key)
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(
                    f"{directory / STATE}: {key} is not a {type(probe.bit_generator).__name__} "
                    f"state ({exc}); the checkpoint is damaged"
                ) from None
        return state

    def _check_built_with(self, params: dict[str, Any], source: str) -> None:
        for key in self.BUILT_WITH:
            if key in params and params[key] != self.hp[key]:
                raise ValueError(
                    f"{self.algorithm}: {source} has {key}={params[key]!r}, but this agent "
                    f"was built with {key}={self.hp[key]!r}, which chose what it is made of: "
                    "build a new agent for another value"
                )

    def restore_state(
        self, state: dict[str, Any], generators: dict[str, np.random.Generator], directory: Path
    ) -> None:
        """Take back what ``write_state`` wrote, once the weights are loaded."""
        for name, generator in generators.items():
            generator.bit_generator.state = state[name]
        self._hp = HyperparamSet.from_dict(state["hyperparams"])
        self.apply_hyperparams()
        self.load_extra_state(state.get("extra", {}))
        self.load_extra(directory)
