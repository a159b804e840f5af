"""LoopCallback: observers of every loop event, isolated from each other."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from optix_core.types import EvalMetrics, HyperparamSet, PolicySnapshot

if TYPE_CHECKING:
    from optix_core.loop import LoopReport, RLOptimizer

log = logging.getLogger("optix")


class LoopCallback:
    """Override the hooks you need; every hook is optional.

    A callback that continues training past DORMANT (a PolicyManager that
    spawns variants, for instance) sets ``handles_dormant = True``: the loop
    then resets the scheduler instead of stopping.
    """

    handles_dormant: bool = False

    def on_loop_start(self, loop: RLOptimizer) -> None: ...

    def on_loop_stop(self, report: LoopReport) -> None: ...

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None: ...

    def on_improvement(self, snapshot: PolicySnapshot) -> None: ...

    def on_plateau(self, episode_id: int, metrics: EvalMetrics) -> None: ...

    def on_dormant(self, episode_id: int) -> None: ...

    def on_degradation(self, episode_id: int, metrics: EvalMetrics) -> None: ...

    def on_hyperparam_update(self, old: HyperparamSet, new: HyperparamSet) -> None: ...


HOOKS = (
    "on_loop_start",
    "on_loop_stop",
    "on_episode_end",
    "on_improvement",
    "on_plateau",
    "on_dormant",
    "on_degradation",
    "on_hyperparam_update",
)


class CallbackList:
    """Fans an event out to every callback; one that raises is logged and skipped.

    A dashboard that crashes must not take a long training run down with it.
    """

    def __init__(self, callbacks: Iterable[LoopCallback] = ()) -> None:
        self.callbacks: list[LoopCallback] = list(callbacks)

    def add(self, callback: LoopCallback) -> None:
        self.callbacks.append(callback)

    @property
    def handles_dormant(self) -> bool:
        return any(getattr(cb, "handles_dormant", False) for cb in self.callbacks)

    def fire(self, hook: str, *args: Any) -> None:
        for callback in list(self.callbacks):
            method = getattr(callback, hook, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception:
                log.exception("callback %s failed in %s; skipped", type(callback).__name__, hook)
