"""TrialContext: what a sweep's objective sees of its trial."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

ENV_STEPS = "env_steps"  # user attribute: environment steps the trial has taken
ERROR = "error"  # user attribute: why the objective failed
WORKER = "worker"  # user attribute: "host:pid" of the process running the trial


class TrialContext:
    """One trial's configuration, its own directory, and its line to the pruner.

    An objective is a picklable callable ``objective(context) -> float``. It
    reads ``params``, keeps files under ``directory`` (created on first use,
    never shared with another trial), counts the environment steps it takes
    with ``add_env_steps`` (the sweep sums them over every trial), and reports
    progress with ``report(value, step)``, which returns ``True`` when the
    pruner wants the trial stopped; the objective then raises
    ``optuna.TrialPruned``.
    """

    def __init__(self, trial: optuna.Trial, params: dict[str, Any], directory: Path) -> None:
        self.trial = trial
        self.params = params
        self._directory = directory
        self._env_steps = 0

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def directory(self) -> Path:
        self._directory.mkdir(parents=True, exist_ok=True)
        return self._directory

    @property
    def env_steps(self) -> int:
        return self._env_steps

    def add_env_steps(self, n: int) -> None:
        self._env_steps += int(n)

    def report(self, value: float, step: int) -> bool:
        """Record an intermediate score at ``step``; ``True`` means: stop, you are pruned.

        Non-finite values are not recorded: Optuna's median pruner would prune
        a trial whose only values are NaN, and a window with no finished
        episode has no score yet.
        """
        self.save_env_steps()
        if not math.isfinite(value):
            return False
        self.trial.report(float(value), int(step))
        return self.trial.should_prune()

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-ready value with the trial (``study.trials[i].user_attrs``)."""
        self.trial.set_user_attr(key, value)

    def save_env_steps(self) -> None:
        """Write the step count to the study now, so a trial that dies is still counted."""
        self.trial.set_user_attr(ENV_STEPS, self._env_steps)
