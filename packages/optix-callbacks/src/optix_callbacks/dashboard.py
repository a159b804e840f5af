"""RichDashboardCallback: a live panel of the run in the terminal.

It shows what a practitioner glances at while a run trains: the last scores
as a sparkline, the scheduler's state and how far it is from DORMANT (the
loop's own convergence test: evaluations in a row without improvement), the
hyperparameters in force (those online tuning moved are highlighted), the
smoothed and best scores, and the pace in env steps per second. Rich redraws
it ``refresh_rate`` times a second from its own thread, so the pace keeps
moving between evaluations; the loop's ``[loop]`` lines scroll above it.

When the output is not a terminal (piped to a file, a CI log) there is
nothing to redraw: the dashboard stands aside and the plain ``[loop]`` lines
are the record, printed by the dashboard itself when the loop is not verbose.
"""

from __future__ import annotations

import atexit
import json
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from optix_core import LoopCallback
from optix_core.report import progress_line
from optix_core.runs import env_label
from optix_core.types import EvalMetrics, HyperparamSet, LoopState, PolicySnapshot

BLOCKS = "▁▂▃▄▅▆▇█"
STATE_STYLES = {
    LoopState.ACTIVE: "bold green",
    LoopState.COOLING: "bold yellow",
    LoopState.DORMANT: "bold blue",
}


def sparkline(values: list[float]) -> str:
    """One block character per value, scaled from the lowest to the highest;
    a value that is not finite is a gap."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    top = len(BLOCKS) - 1
    chars = []
    for v in values:
        if not math.isfinite(v):
            chars.append(" ")
        elif high == low:
            chars.append(BLOCKS[top // 2])
        else:
            chars.append(BLOCKS[round((v - low) / (high - low) * top)])
    return "".join(chars)


class RichDashboardCallback(LoopCallback):
    """A live Rich panel (tensor-optix 1.10's name and ``refresh_rate``).

    ``console`` defaults to Rich's console on standard output; ``run_dir``
    (given by ``optix train --dashboard``) puts the environment and algorithm
    in the title; ``history`` is how many evaluation scores the sparkline shows.
    """

    def __init__(
        self,
        refresh_rate: float = 2,
        *,
        run_dir: Path | None = None,
        console: Console | None = None,
        history: int = 20,
    ) -> None:
        if not refresh_rate > 0:
            raise ValueError(f"refresh_rate must be > 0 (redraws a second), got {refresh_rate!r}")
        if history < 2:
            raise ValueError(f"history must be >= 2 scores, got {history!r}")
        self.refresh_rate = refresh_rate
        self.console = console or Console()
        self.run_dir = run_dir
        self.title: str | None = None
        self._scores: deque[float] = deque(maxlen=history)
        self._last: EvalMetrics | None = None
        self._tuned: set[str] = set()
        self._checkpoints = 0
        self._loop: Any = None
        self._live: Live | None = None
        self._plain = False
        self._started = time.monotonic()
        self._steps_at_start = 0

    # ---- hooks --------------------------------------------------------------

    def on_loop_start(self, loop: Any) -> None:
        self._loop = loop
        self.title = _title(self.run_dir)  # optix train writes config.json before it starts
        self._started = time.monotonic()
        self._steps_at_start = loop.pipeline.env_steps
        if not self.console.is_terminal:
            self._plain = not loop.verbose  # a verbose loop prints the lines itself
            return
        self._live = Live(
            console=self.console,
            refresh_per_second=self.refresh_rate,
            get_renderable=self._render,
        )
        self._live.start()
        atexit.register(self._stop)  # leave the terminal usable if the run dies outright

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        self._scores.append(metrics.primary_score)
        self._last = metrics
        if self._plain:
            print(progress_line(metrics, self._loop.scheduler.state), flush=True)

    def on_improvement(self, snapshot: PolicySnapshot) -> None:
        self._checkpoints += 1

    def on_hyperparam_update(self, old: HyperparamSet, new: HyperparamSet) -> None:
        self._tuned.update(k for k, v in new.params.items() if old.params.get(k) != v)

    def on_loop_stop(self, report: Any) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()  # draws the panel one last time, as the run ended
            self._live = None
            atexit.unregister(self._stop)

    # ---- the panel ----------------------------------------------------------

    def _render(self) -> RenderableType:
        # Drawn on Rich's refresh thread, out of reach of the loop's callback isolation.
        try:
            return self._panel()
        except Exception as exc:
            return Text(f"dashboard: cannot draw ({type(exc).__name__}: {exc})", style="red")

    def _panel(self) -> RenderableType:
        loop = self._loop
        scheduler = loop.scheduler
        rows = Table.grid(padding=(0, 2))
        rows.add_column(style="dim", justify="right")
        rows.add_column()
        rows.add_row("state", Text(scheduler.state.value, style=STATE_STYLES[scheduler.state]))
        rows.add_row("scores", self._sparkline())
        rows.add_row("score", self._scores_text())
        rows.add_row("toward DORMANT", self._progress(scheduler, loop))
        rows.add_row("window", f"{loop.episode:,}  (evaluating every {scheduler.interval})")
        rows.add_row("env steps", f"{loop.pipeline.env_steps:,}  ({self._pace():,.0f} steps/s)")
        rows.add_row("checkpoints", f"{self._checkpoints} new best this session")
        rows.add_row("elapsed", _duration(time.monotonic() - self._started))
        return Panel(
            Group(rows, self._hyperparams(loop)),
            title=self.title or f"optix · {type(loop.agent).__name__}",
            border_style=STATE_STYLES[scheduler.state].split()[-1],
            expand=False,
        )

    def _sparkline(self) -> Text:
        scores = list(self._scores)
        if not scores:
            return Text("waiting for the first evaluation", style="dim")
        finite = [s for s in scores if math.isfinite(s)]
        text = Text(sparkline(scores), style="cyan")
        if finite:
            text.append(f"  {min(finite):.4g} … {max(finite):.4g}", style="dim")
        return text

    def _scores_text(self) -> str:
        if self._last is None:
            return "-"
        numbers = self._last.metrics
        parts = [f"last {self._last.primary_score:.4g}"]
        if "smoothed_score" in numbers:
            parts.append(f"smoothed {numbers['smoothed_score']:.4g}")
        if "best_score" in numbers:
            parts.append(f"best {numbers['best_score']:.4g} (window {int(numbers['best_window'])})")
        return "   ".join(parts)

    def _progress(self, scheduler: Any, loop: Any) -> RenderableType:
        done, total = scheduler.consecutive_no_improvement, scheduler.dormant_threshold
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            ProgressBar(total=total, completed=min(done, total), width=20),
            f"{done} of {total} evaluations without improvement",
        )
        solved = loop.solved
        patience = scheduler.patience(solved)
        if patience:  # DORMANT also waits in proportion to the learning
            start = scheduler.patience_from
            what = "exploration ended" if start > scheduler.record_episode else "the last record"
            needed = max(1, math.ceil(patience))
            since = loop.episode - start
            unsolved = "" if solved else f", unsolved (below {loop.solved_score:g})"
            grid.add_row(
                ProgressBar(total=needed, completed=min(since, needed), width=20),
                f"{since} of {needed} windows since {what} (window {start}){unsolved}",
            )
        return grid

    def _hyperparams(self, loop: Any) -> RenderableType:
        params = loop.agent.get_hyperparams().params
        table = Table(title="hyperparameters", title_justify="left", box=None, padding=(0, 2))
        table.add_column("name", style="dim")
        table.add_column("value", justify="right")
        for name, value in sorted(params.items()):
            style = "bold yellow" if name in self._tuned else ""
            table.add_row(name, Text(_value(value), style=style))
        if not self._tuned:
            return table
        return Group(table, Text("  highlighted: moved by online tuning", style="dim"))

    def _pace(self) -> float:
        seconds = time.monotonic() - self._started
        steps = self._loop.pipeline.env_steps - self._steps_at_start
        return steps / seconds if seconds > 0 else 0.0


def _title(run_dir: Path | None) -> str | None:
    """'optix · CartPole-v1 · ppo (torch)' from the run's config, where there is one
    (the environment with its --env-kwarg arguments)."""
    if run_dir is None:
        return None
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
        return f"optix · {env_label(config)} · {config['algo']} ({config['backend']})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"optix · {Path(run_dir).name}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
