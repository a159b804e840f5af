"""PolicyManagerCallback: policy evolution driven by the loop's DORMANT events.

On every DORMANT, in order: rebalance the ensemble weights from the members'
scores → roll the trained agent back to the best checkpoint if it degraded
(on-policy agents only, as the loop itself does) → decide (the
MetaController's decision, or SPAWN while budget remains and STOP after) →
carry it out. SPAWN keeps the retiring lineage as a frozen ensemble member
(when an ``agent_factory`` is given), turns the trained agent into a variant
of the best checkpoint with perturbed hyperparameters, and prunes the
ensemble back to its size limit. STOP prints the training report and calls
the stop function.

How a variant is trained in a one-agent loop: the loop trains one agent
object for its whole run (its pipelines are bound to it), so the variant
lives in that object. The agent's current state is first copied into a fresh
shell from ``agent_factory``, which joins the ensemble; then the best
checkpoint and the perturbed hyperparameters are loaded into the agent
itself, and the loop trains on. Every ensemble member is thus a lineage that
was really trained, each spawn's hyperparameters actually take effect, and
the caller's agent object is the one that ends holding the best weights.
Without an ``agent_factory`` spawning still restarts the agent from the best
checkpoint with new hyperparameters (population-based-training style); the
ensemble just does not grow.

The budget runs out at a DORMANT, not at the spawn that spends it, so the
last variant gets its own training before the run ends.

A spawn that fails (the agent refuses the perturbed hyperparameters, the
copy of the retiring lineage cannot be made) is never half-done: the frozen
copy, if one was made, is torn down instead of joining the ensemble, the
agent trains on as it was, a warning is logged and the manager's
``failed_spawns`` counts it (an attempt spends the budget like a spawn). The
callback stays active.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from optix_core.agent import BaseAgent
from optix_core.callbacks import LoopCallback
from optix_core.evolution.history import ScoreHistory
from optix_core.evolution.meta_controller import MetaAction
from optix_core.report import LoopReport
from optix_core.types import EvalMetrics, LoopState

if TYPE_CHECKING:
    from optix_core.evolution.policy_manager import AgentShellFactory, PolicyManager
    from optix_core.loop import RLOptimizer

log = logging.getLogger("optix")

BUDGET_SPENT = "Spawn budget exhausted"
META_STOP = "MetaController decision"


class MetaDecider(Protocol):
    """What the callback asks on DORMANT; ``MetaController`` is one."""

    def decide(
        self, history: ScoreHistory, *, spawns_left: int | None, prunable: int | None
    ) -> MetaAction: ...


class PolicyManagerCallback(LoopCallback):
    """Built by ``PolicyManager.as_callback``; see the module docstring.

    Call ``set_stop_fn(loop.stop)``: without a stop function the callback
    prints the report when the budget runs out but cannot halt the loop,
    which then trains on until ``max_episodes``.
    """

    handles_dormant = True

    def __init__(
        self,
        manager: PolicyManager,
        agent: BaseAgent,
        agent_factory: AgentShellFactory | None = None,
        meta_controller: MetaDecider | None = None,
    ) -> None:
        self.manager = manager
        self.agent = agent
        self.agent_factory = agent_factory
        self.meta_controller = meta_controller
        self.reported = False
        self._stop_fn: Callable[[str], Any] | None = None
        self._loop: RLOptimizer | None = None
        self._started = time.monotonic()
        self._borrowed_registry = False

    def state_dict(self) -> dict[str, Any]:
        """The spawn budget spent and the prunes done, so a resumed run keeps its budget.

        Frozen ensemble members are agents, not state: a resumed run starts
        its ensemble again from the trained agent."""
        return {
            "spawns_used": self.manager.spawns_used,
            "failed_spawns": self.manager.failed_spawns,
            "pruned": self.manager.pruned,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.manager.spawns_used = int(state.get("spawns_used", 0))
        self.manager.failed_spawns = int(state.get("failed_spawns", 0))
        self.manager.pruned = int(state.get("pruned", 0))

    def set_stop_fn(self, fn: Callable[[str], Any]) -> None:
        """``fn(reason)`` is called to end training; ``RLOptimizer.stop`` fits."""
        self._stop_fn = fn

    # ---- loop events -----------------------------------------------------

    def on_loop_start(self, loop: RLOptimizer) -> None:
        self._loop = loop
        self._started = time.monotonic()
        if self.manager.registry is None:
            self.manager.registry = loop.registry
            self._borrowed_registry = True

    def on_loop_stop(self, report: LoopReport) -> None:
        # A loop without checkpoint_dir deletes its temporary registry next.
        if self._borrowed_registry and self._loop is not None and self._loop.checkpoint_dir is None:
            self.manager.registry = None
            self._borrowed_registry = False

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        self.manager.observe(self.agent, metrics)

    def on_dormant(self, episode_id: int) -> None:
        manager = self.manager
        manager.rebalance()
        latest = manager.score_of(self.agent)
        if latest is not None and self.agent.is_on_policy and manager.is_degraded(latest):
            manager.rollback(self.agent)
            log.info("window %d: degraded to %.4g; rolled back to the best", episode_id, latest)
        action = self._decide()
        log.info("window %d: DORMANT -> %s", episode_id, action.value)
        if action is MetaAction.SPAWN:
            if self._spawn():
                manager.prune()
        elif action is MetaAction.PRUNE:
            manager.prune(bottom_k=1)
        elif action is MetaAction.STOP:
            self._stop(BUDGET_SPENT if manager.budget_exhausted else META_STOP)

    def _spawn(self) -> bool:
        """Freeze the retiring lineage, then respawn the agent; all or nothing."""
        manager = self.manager
        frozen = None
        try:
            if self.agent_factory is not None:
                frozen = manager.freeze(self.agent, self.agent_factory)
        except Exception as exc:
            manager.spawn_failed(exc)
            return False
        try:
            manager.respawn(self.agent)  # counts and logs its own failure
        except Exception:
            if frozen is not None:
                manager.remove_agent(frozen)
            return False
        return True

    def _decide(self) -> MetaAction:
        manager = self.manager
        if self.meta_controller is None:
            action = MetaAction.SPAWN
        else:
            action = self.meta_controller.decide(
                manager.history, spawns_left=manager.spawns_left, prunable=manager.prunable
            )
        if action is MetaAction.SPAWN and manager.budget_exhausted:
            return MetaAction.STOP
        return action

    def _stop(self, reason: str) -> None:
        if not self.reported:
            self.reported = True
            print(self.format_report(reason), flush=True)
            if self._stop_fn is None:
                log.warning(
                    "%s, but PolicyManagerCallback has no stop function "
                    "(set_stop_fn(loop.stop)): training goes on until max_episodes",
                    reason,
                )
        if self._stop_fn is not None:
            self._stop_fn(reason)

    # ---- the report --------------------------------------------------------

    def format_report(self, reason: str) -> str:
        """The "Training Complete" block, with the ensemble's rows."""
        manager = self.manager
        budget = "∞" if manager.max_spawns is None else str(manager.max_spawns)
        extra = {"Spawns used": f"{manager.spawns_used} / {budget}"}
        if manager.failed_spawns:
            extra["Failed spawns"] = str(manager.failed_spawns)
        extra["Pruned agents"] = str(manager.pruned)
        extra["Ensemble size"] = str(manager.ensemble_size)
        return self._loop_report(reason).format(extra=extra)

    def _loop_report(self, reason: str) -> LoopReport:
        loop = self._loop
        best = loop.best_snapshot if loop is not None else None
        validated = best is not None and best.eval_metrics.generalization_gap is not None
        return LoopReport(
            stop_reason=reason,
            episodes=loop.episode if loop is not None else 0,
            env_steps=loop.pipeline.env_steps if loop is not None else 0,
            wall_time=time.monotonic() - self._started,
            final_state=LoopState.DORMANT,
            best_score=best.score if best is not None else None,
            best_episode=best.episode_id if best is not None else None,
            val_score=best.eval_metrics.primary_score if validated else None,
            generalization_gap=best.eval_metrics.generalization_gap if validated else None,
            best_snapshot=best,
        )
