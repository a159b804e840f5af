"""LoopCallback: observers of every loop event, isolated from each other."""

from __future__ import annotations

import difflib
import enum
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy stays out of what `optix runs` and `optix plot` import
    from optix_core.loop import RLOptimizer
    from optix_core.report import LoopReport
    from optix_core.types import EvalMetrics, HyperparamSet, PolicySnapshot

log = logging.getLogger("optix")


class Hook(enum.StrEnum):
    """The events a LoopCallback can observe, in the order a window fires them."""

    ON_LOOP_START = "on_loop_start"
    ON_EPISODE_END = "on_episode_end"
    ON_IMPROVEMENT = "on_improvement"
    ON_DEGRADATION = "on_degradation"
    ON_HYPERPARAM_UPDATE = "on_hyperparam_update"
    ON_PLATEAU = "on_plateau"
    ON_DORMANT = "on_dormant"
    ON_LOOP_STOP = "on_loop_stop"


HOOKS = tuple(hook.value for hook in Hook)


class LoopCallback:
    """Override the hooks you need; every hook is optional.

    ``on_episode_end`` fires once per evaluation, after the evaluation's
    checkpoint decision, so its metrics hold the raw, smoothed and selection
    scores. A callback that continues training past DORMANT (a PolicyManager
    that spawns variants, for instance) sets ``handles_dormant = True``: the
    loop then resets the scheduler instead of stopping. A callback with state
    that a resumed run needs (a budget, a clock) returns it from
    ``state_dict`` as JSON-ready data; the loop stores it in every snapshot
    and hands it back to ``load_state_dict`` on resume.
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

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CallbackList:
    """Fans an event out to every callback.

    A callback that raises is reported once, with its traceback, and disabled:
    a dashboard that crashes must not take a long training run down with it,
    nor fill the log with the same error every window. A method named like a
    hook but not one (``on_episode_ended``) is refused when the callback is
    added, so a misspelt hook is an error instead of silence.
    """

    def __init__(self, callbacks: Iterable[LoopCallback] = ()) -> None:
        self.callbacks: list[LoopCallback] = []
        self._disabled: set[int] = set()
        for callback in callbacks:
            self.add(callback)

    def add(self, callback: LoopCallback) -> None:
        _check_hook_names(callback)
        self.callbacks.append(callback)

    @property
    def handles_dormant(self) -> bool:
        return any(getattr(cb, "handles_dormant", False) for cb in self.callbacks)

    def fire(self, hook: Hook, *args: Any) -> None:
        if not isinstance(hook, Hook):
            raise TypeError(f"fire() takes a Hook, got {hook!r}")
        for callback in list(self.callbacks):
            method = getattr(callback, hook.value, None)
            if method is None or id(callback) in self._disabled:
                continue
            try:
                method(*args)
            except Exception:
                log.exception(
                    "callback %s failed in %s; it is disabled for the rest of the run",
                    type(callback).__name__,
                    hook.value,
                )
                self._disabled.add(id(callback))

    def state_dict(self) -> dict[str, Any]:
        """Each stateful callback's state, keyed by position and class name."""
        states = {}
        for key, callback in self._keyed():
            state = callback.state_dict() if hasattr(callback, "state_dict") else {}
            if state:
                states[key] = state
        return states

    def load_state_dict(self, states: dict[str, Any]) -> None:
        for key, callback in self._keyed():
            if key in states and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(states[key])

    def _keyed(self) -> list[tuple[str, LoopCallback]]:
        return [(f"{i}:{type(cb).__name__}", cb) for i, cb in enumerate(self.callbacks)]


def _check_hook_names(callback: LoopCallback) -> None:
    for name in dir(callback):
        if name.startswith("on_") and name not in HOOKS and callable(getattr(callback, name)):
            guess = difflib.get_close_matches(name, HOOKS, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else f"; hooks are {', '.join(HOOKS)}"
            raise ValueError(f"{type(callback).__name__}.{name} is not a loop hook{hint}")
