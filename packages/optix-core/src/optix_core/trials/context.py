"""TrialContext: what a sweep's objective sees of its trial."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

ENV_STEPS = "env_steps"  # user attribute: environment steps the trial has taken
ERROR = "error"  # user attribute: why the objective failed
WORKER = "worker"  # user attribute: "host:pid" of the process running the trial
STOPPED = "stopped"  # user attribute: why a trial was stopped from outside (signal, lost worker)
SURPLUS = "surplus"  # user attribute: started past the budget by a racing worker; never run
BASELINE = "baseline"  # user attribute: the enqueued trial of the algorithm's defaults


class TrialContext:
    """One trial's configuration, its own directory, and its line to the pruner.

    An objective is a picklable callable ``objective(context) -> float``. It
    reads ``params``, keeps files under ``directory`` (created on first use,
    never shared with another trial), counts the environment steps it takes
    with ``add_env_steps`` (the sweep sums them over every trial), and reports
    progress with ``report(value, step)``, which returns ``True`` when the
    pruner wants the trial stopped; the objective then raises
    ``optuna.TrialPruned``.

    With ``progress_interval`` (seconds) ``report`` also prints a progress
    line for the running trial at most that often (0: at every report); an
    objective that knows its whole budget sets ``total_steps`` for it.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        directory: Path,
        progress_interval: float | None = None,
    ) -> None:
        self.trial = trial
        self.params = params
        self._directory = directory
        self._env_steps = 0
        self.progress_interval = progress_interval
        self.total_steps: int | None = None
        self._last_line = time.monotonic()

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
        self._progress(value, step)
        if not math.isfinite(value):
            return False
        self.trial.report(float(value), int(step))
        return self.trial.should_prune()

    def _progress(self, value: float, step: int) -> None:
        if self.progress_interval is None:
            return
        now = time.monotonic()
        if now - self._last_line < self.progress_interval:
            return
        self._last_line = now
        total = f" / {self.total_steps:,}" if self.total_steps else ""
        score = f"{value:>8.1f}" if math.isfinite(value) else "       -"
        print(
            f"trial {self.number:>3}  running   score {score}  at {int(step):,}{total} env steps",
            flush=True,
        )

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-ready value with the trial (``study.trials[i].user_attrs``)."""
        self.trial.set_user_attr(key, value)

    def save_env_steps(self) -> None:
        """Write the step count to the study now, so a trial that dies is still counted."""
        self.trial.set_user_attr(ENV_STEPS, self._env_steps)
