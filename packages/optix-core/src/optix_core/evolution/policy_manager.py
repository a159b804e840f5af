"""PolicyManager: an ensemble of policies, and how it evolves from the best checkpoint.

It keeps weighted ensemble members, rolls an agent back to the best
checkpoint, spawns variants of that checkpoint with perturbed hyperparameters
(their noise scale set by ``noise``), and prunes the weakest members, tearing
each one down so that its accelerator memory is released. ``as_callback``
wires it into an ``RLOptimizer`` (see ``callback.PolicyManagerCallback``).

**Every member holds its own weights.** A variant is the best checkpoint's
weights loaded into an agent of its own, with its own hyperparameters, and
each lineage keeps its weights when the next one is spawned: a population of
real models, each costing its memory. ``PBTOptimizer`` is the opposite: a
population of hyperparameter configurations taking turns on one shared set
of weights, where "exploit" copies a configuration, never a model.

A spawn's hyperparameters are the best checkpoint's, perturbed inside a
search space (the manager's ``search_space``, else the agent's own
``search_space``) by the rule PBT also uses
(``optix_core.search_space.perturb_params``), and clipped into the ranges the
agent declares valid (``hyperparam_bounds``). A spawn the agent still refuses
fails whole: the agent keeps its weights and hyperparameters, nothing joins
the ensemble, a warning is logged and ``failed_spawns`` counts it.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optix_core.agent import BaseAgent
from optix_core.checkpoints import CheckpointError, CheckpointRegistry
from optix_core.evolution.callback import MetaDecider, PolicyManagerCallback
from optix_core.evolution.history import ScoreHistory
from optix_core.evolution.noise import (
    noise_signals,
    perturb_hyperparams,
    single_signal_scale,
)
from optix_core.search_space import SearchSpace, as_search_space
from optix_core.types import EvalMetrics, HyperparamSet, PolicySnapshot

log = logging.getLogger("optix")

AgentShellFactory = Callable[[], BaseAgent]


@dataclass
class EnsembleMember:
    """One policy of the ensemble. ``pinned`` members (the agent a loop trains,
    an ensemble's primary) are never pruned."""

    agent: BaseAgent
    weight: float
    score: float | None = None
    pinned: bool = False


class PolicyManager:
    """Rollback, spawn, prune, boost, ensemble weights and adaptive spawn noise.

    ``registry`` may be None when the manager is used through ``as_callback``:
    the callback then borrows the loop's registry for the run. ``max_spawns``
    is the spawn budget (None: unlimited), spent by every attempt: a spawn
    that fails (``failed_spawns``) uses its share too, so that one that can
    never succeed cannot keep a run from stopping. ``search_space`` (in
    TrialOrchestrator's format, checked by ``parse_search_space``) is what a
    spawn perturbs; None perturbs each agent's own ``search_space``, or with
    none declared every float by a factor (see ``perturb_hyperparams``).
    ``history_window`` evaluations feed the adaptive noise.
    """

    def __init__(
        self,
        registry: CheckpointRegistry | None = None,
        *,
        max_spawns: int | None = 5,
        max_ensemble_size: int = 4,
        base_noise: float = 0.05,
        min_scale: float = 0.001,
        max_scale: float = 0.1,
        max_slope: float = 0.05,
        search_space: Mapping[str, tuple] | None = None,
        degradation_threshold: float = 0.95,
        history_window: int = 20,
        seed: int | None = None,
    ) -> None:
        if max_spawns is not None and max_spawns < 0:
            raise ValueError(f"max_spawns must be >= 0 or None, got {max_spawns}")
        if max_ensemble_size < 1:
            raise ValueError(f"max_ensemble_size must be >= 1, got {max_ensemble_size}")
        if not 0.0 <= min_scale <= max_scale < math.inf:
            raise ValueError(
                f"need 0 <= min_scale <= max_scale, got min_scale={min_scale}, "
                f"max_scale={max_scale}"
            )
        if not 0.0 <= base_noise < math.inf:
            raise ValueError(f"base_noise must be >= 0, got {base_noise}")
        if not max_slope > 0.0:
            raise ValueError(f"max_slope must be > 0, got {max_slope}")
        if not 0.0 < degradation_threshold <= 1.0:
            raise ValueError(
                f"degradation_threshold must be in (0, 1], got {degradation_threshold}"
            )
        self._space: SearchSpace | None = (
            as_search_space(search_space) if search_space is not None else None
        )
        self.registry = registry
        self.max_spawns = max_spawns
        self.max_ensemble_size = max_ensemble_size
        self.base_noise = base_noise
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.max_slope = max_slope
        self.search_space = dict(search_space) if search_space is not None else None
        self.degradation_threshold = degradation_threshold
        self.history = ScoreHistory(history_window)
        self.spawns_used = 0
        self.failed_spawns = 0
        self.pruned = 0
        self._members: list[EnsembleMember] = []
        self._rng = np.random.default_rng(seed)

    # ---- the ensemble ----------------------------------------------------

    def add_agent(
        self,
        agent: BaseAgent,
        weight: float = 1.0,
        *,
        score: float | None = None,
        pinned: bool = False,
    ) -> None:
        _check_weight(weight)
        if getattr(agent, "policy_manager", None) is self:
            raise ValueError(
                "an EnsembleAgent cannot be a member of its own PolicyManager (it would act "
                "through itself); add or pass its primary agent instead"
            )
        if agent in self:
            raise ValueError(f"{type(agent).__name__} is already a member of this ensemble")
        self._members.append(EnsembleMember(agent, float(weight), score, pinned))

    def remove_agent(self, agent: BaseAgent) -> None:
        """Take ``agent`` out of the ensemble and tear it down."""
        self._members.remove(self._member(agent))
        agent.teardown()

    def pin(self, agent: BaseAgent) -> None:
        """Never prune ``agent``; it joins with weight 1 if not yet a member."""
        if agent not in self:
            self.add_agent(agent)
        self._member(agent).pinned = True

    def __contains__(self, agent: object) -> bool:
        return any(m.agent is agent for m in self._members)

    @property
    def members(self) -> tuple[EnsembleMember, ...]:
        return tuple(self._members)

    @property
    def agents(self) -> list[BaseAgent]:
        return [m.agent for m in self._members]

    @property
    def weights(self) -> np.ndarray:
        """Each member's weight, in member order (not normalised)."""
        return np.array([m.weight for m in self._members], dtype=np.float64)

    @property
    def ensemble_size(self) -> int:
        return len(self._members)

    @property
    def prunable(self) -> int:
        """Members that ``prune`` may remove."""
        return sum(not m.pinned for m in self._members)

    def weight_of(self, agent: BaseAgent) -> float:
        return self._member(agent).weight

    def score_of(self, agent: BaseAgent) -> float | None:
        return self._member(agent).score

    def set_score(self, agent: BaseAgent, score: float) -> None:
        self._member(agent).score = float(score)

    def observe(self, agent: BaseAgent, metrics: EvalMetrics) -> None:
        """Record an evaluation of ``agent``: its score and the noise history."""
        self.history.record(metrics)
        if agent in self:
            self.set_score(agent, metrics.primary_score)

    def boost(self, agent: BaseAgent, factor: float = 2.0) -> float:
        """Multiply ``agent``'s weight by ``factor`` (after a regime change, say);
        the next ``rebalance`` recomputes it from the scores. Returns the new weight."""
        _check_weight(factor, "factor")
        member = self._member(agent)
        member.weight *= factor
        return member.weight

    def rebalance(self) -> np.ndarray:
        """Set the weights from the members' scores and return them.

        w = softmax(z), z = (score − mean) / std over the scored members
        (z = 0 for a member without a score, and for all when the scores are
        equal; with no score at all the weights stay). Standardising makes the
        weights independent of the reward's offset and scale, negative rewards
        included: a member one standard deviation better than another gets
        e ≈ 2.7 times its weight.
        """
        scored = np.array([m.score for m in self._members if m.score is not None])
        if not scored.size:  # no evidence: keep the weights as they are
            return self.weights
        spread = float(scored.std())
        z = np.zeros(len(self._members))
        if spread > 0.0:
            for i, member in enumerate(self._members):
                if member.score is not None:
                    z[i] = (member.score - scored.mean()) / spread
        w = np.exp(z - z.max())
        w /= w.sum()
        for member, weight in zip(self._members, w, strict=True):
            member.weight = float(weight)
        return self.weights

    def prune(self, bottom_k: int | None = None) -> list[BaseAgent]:
        """Remove the ``bottom_k`` weakest unpinned members, or with None, as many
        as bring the ensemble down to ``max_ensemble_size``; tear each down.

        Weakest means lowest score (a member without one counts lowest: a
        member stays on evidence), then lowest weight, then oldest.
        """
        if bottom_k is None:
            bottom_k = max(0, self.ensemble_size - self.max_ensemble_size)
        if bottom_k < 0:
            raise ValueError(f"bottom_k must be >= 0, got {bottom_k}")
        order = sorted(
            (i for i, m in enumerate(self._members) if not m.pinned),
            key=lambda i: (_score_or_lowest(self._members[i]), self._members[i].weight, i),
        )
        removed = [self._members[i].agent for i in order[:bottom_k]]
        for agent in removed:
            self.remove_agent(agent)
        self.pruned += len(removed)
        if removed:
            log.info("pruned %d agent(s); ensemble size %d", len(removed), self.ensemble_size)
        return removed

    def _member(self, agent: BaseAgent) -> EnsembleMember:
        for member in self._members:
            if member.agent is agent:
                return member
        raise ValueError(f"{type(agent).__name__} is not a member of this ensemble")

    # ---- the best checkpoint ---------------------------------------------

    def best_snapshot(self) -> PolicySnapshot | None:
        snapshots = self._registry().snapshots("best")
        return snapshots[0] if snapshots else None

    def is_degraded(self, score: float) -> bool:
        """True when ``score`` fell more than (1 − degradation_threshold) of the
        best checkpoint's score magnitude below it (the loop's own rule)."""
        best = self.best_snapshot()
        if best is None:
            return False
        b = best.eval_metrics.primary_score
        return score < b - (1.0 - self.degradation_threshold) * abs(b)

    def rollback(self, agent: BaseAgent) -> bool:
        """Load the best checkpoint into ``agent``; False when there is none."""
        manifest = self._registry().restore(agent, kind="best")
        if manifest is None:
            return False
        if agent in self:
            self.set_score(agent, manifest["eval_metrics"]["primary_score"])
        return True

    def _registry(self) -> CheckpointRegistry:
        if self.registry is None:
            raise RuntimeError(
                "this PolicyManager has no CheckpointRegistry: pass one, or use "
                "as_callback() in an RLOptimizer, which lends it the loop's"
            )
        return self.registry

    # ---- evolution ---------------------------------------------------------

    @property
    def spawns_left(self) -> int | None:
        """Spawn attempts left in the budget: successful and failed ones both spend it."""
        if self.max_spawns is None:
            return None
        return max(0, self.max_spawns - self.spawns_used - self.failed_spawns)

    @property
    def budget_exhausted(self) -> bool:
        return self.spawns_left == 0

    def noise_scale(self) -> float:
        """The spawn noise for the evaluations recorded so far (see ``noise``)."""
        val = self.history.val
        if val is None:
            return single_signal_scale(self.history.train, self.base_noise)
        return noise_signals(self.history.train, val, self.max_slope).scale(
            self.min_scale, self.max_scale
        )

    def respawn(self, agent: BaseAgent) -> HyperparamSet:
        """Turn ``agent`` into a variant of the best checkpoint: its weights, and
        its hyperparameters perturbed by ``noise_scale()``. Uses one spawn.

        All or nothing: the perturbed hyperparameters are handed to the agent
        before its weights change, so a value it refuses (or no best
        checkpoint) leaves it exactly as it was. Such a failure is logged as
        a warning, counted in ``failed_spawns`` (spending one spawn of the
        budget) and raised.
        """
        if self.budget_exhausted:
            raise RuntimeError(f"the spawn budget ({self.max_spawns}) is spent")
        try:
            hyperparams, manifest, scale = self._respawn(agent)
        except Exception as exc:
            self.spawn_failed(exc)
            raise
        self.spawns_used += 1
        if agent in self:
            self.set_score(agent, manifest["eval_metrics"]["primary_score"])
        log.info(
            "spawn %d/%s from %s with noise %.4g: %s",
            self.spawns_used,
            self.max_spawns if self.max_spawns is not None else "∞",
            manifest["snapshot_id"],
            scale,
            hyperparams.params,
        )
        return hyperparams

    def spawn_failed(self, error: BaseException) -> None:
        """Count and report a spawn that did not happen (``respawn`` calls it;
        so does the callback when the copy of the retiring lineage fails)."""
        self.failed_spawns += 1
        log.warning(
            "spawn failed (%d so far; no variant was made): %s: %s",
            self.failed_spawns,
            type(error).__name__,
            error,
        )

    def perturbation_space(self, agent: BaseAgent) -> SearchSpace | None:
        """What a spawn of ``agent`` perturbs: the manager's search space, else
        the agent's declared ``search_space``; None when neither says."""
        if self._space is not None:
            return self._space
        declared = getattr(agent, "search_space", None)
        return as_search_space(declared) if declared else None

    def _respawn(self, agent: BaseAgent) -> tuple[HyperparamSet, dict, float]:
        best = self.best_snapshot()
        if best is None:
            raise CheckpointError("no best checkpoint to spawn a variant from")
        scale = self.noise_scale()
        hyperparams = perturb_hyperparams(
            best.hyperparams,
            scale,
            self._rng,
            self.perturbation_space(agent),
            bounds=getattr(agent, "hyperparam_bounds", None),
        )
        previous = agent.get_hyperparams()
        # First, while the agent's weights are still its own: a refusal here
        # leaves the agent as it was.
        agent.set_hyperparams(hyperparams)
        try:
            manifest = self._registry().restore(agent, kind="best")
            if manifest is None:
                raise CheckpointError("no readable best checkpoint to spawn a variant from")
        except Exception:
            agent.set_hyperparams(previous)
            raise
        # Loading a checkpoint may also load the hyperparameters saved with it.
        agent.set_hyperparams(hyperparams)
        return hyperparams, manifest, scale

    def spawn_variant(self, agent_factory: AgentShellFactory, weight: float = 1.0) -> BaseAgent:
        """A new member: a fresh shell from ``agent_factory`` turned into a
        variant of the best checkpoint (``respawn``). Uses one spawn."""
        _check_weight(weight)
        shell = agent_factory()
        self.add_agent(shell, weight)
        try:
            self.respawn(shell)  # gives it the best checkpoint's score
        except BaseException:
            self.remove_agent(shell)
            raise
        return shell

    def freeze(self, agent: BaseAgent, agent_factory: AgentShellFactory) -> BaseAgent:
        """A new member holding a copy of ``agent`` as it is now (weights and
        hyperparameters), built with ``agent_factory``; it inherits ``agent``'s
        weight and score when ``agent`` is a member."""
        shell = agent_factory()
        try:
            with tempfile.TemporaryDirectory(prefix="optix-freeze-") as tmp:
                path = str(Path(tmp) / "agent")
                agent.save_weights(path)
                shell.load_weights(path)
            shell.set_hyperparams(agent.get_hyperparams())
        except BaseException:
            shell.teardown()
            raise
        source = self._member(agent) if agent in self else None
        self.add_agent(
            shell,
            source.weight if source else 1.0,
            score=source.score if source else None,
        )
        return shell

    def as_callback(
        self,
        agent: BaseAgent,
        agent_factory: AgentShellFactory | None = None,
        meta_controller: MetaDecider | None = None,
    ) -> PolicyManagerCallback:
        """A LoopCallback that evolves ``agent`` (the agent the loop trains) on
        every DORMANT; see ``PolicyManagerCallback``. ``agent`` joins the
        ensemble, pinned."""
        self.pin(agent)
        return PolicyManagerCallback(self, agent, agent_factory, meta_controller)


def _check_weight(weight: float, name: str = "weight") -> None:
    if not (math.isfinite(weight) and weight >= 0.0):
        raise ValueError(f"an ensemble {name} must be a finite number >= 0, got {weight!r}")


def _score_or_lowest(member: EnsembleMember) -> float:
    return -math.inf if member.score is None else member.score
