"""Run directories: what ``optix train`` writes and ``--resume`` / ``optix eval`` read.

runs/<env>-<algo>-<time>/
    config.json      what was asked for: env, algorithm, backend, seed, hyperparameters, loop
    checkpoints/     the CheckpointRegistry (best-* and latest-* snapshots)
    metrics.jsonl    one line per evaluation (``read_metrics``)
    report.json      why it stopped, best score, env steps, wall time, final evaluation
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optix_core.callbacks import LoopCallback

if TYPE_CHECKING:  # read by `optix runs` and `optix plot`, which import no numpy
    from optix_core.types import EvalMetrics, HyperparamSet

CONFIG = "config.json"
METRICS = "metrics.jsonl"
REPORT = "report.json"
CHECKPOINTS = "checkpoints"


class RunError(Exception):
    """A run directory that cannot be used: missing, not a run, or damaged."""


@dataclass
class TrainConfig:
    """Everything needed to build a run again, for ``--resume`` and ``optix eval``."""

    env_id: str
    algo: str
    backend: str
    device: str
    seed: int
    hyperparams: dict[str, Any]
    n_envs: int
    window_size: int
    max_windows: int | None = None
    max_env_steps: int | None = None
    loop: dict[str, Any] = field(default_factory=dict)
    online_tuning: dict[str, tuple] = field(default_factory=dict)
    selection_episodes: int = 5
    selection_share: float | None = None  # None (runs before it existed): judge every candidate
    stop_on_dormant: bool = True  # False: --no-early-stop, train the whole budget
    pipeline_options: dict[str, Any] = field(default_factory=dict)  # --actors, --ray
    callbacks: dict[str, str | None] = field(default_factory=dict)  # --dashboard, --callback ...
    network: dict[str, Any] = field(default_factory=dict)  # the preset's: the factory's options
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # --env-kwarg: gymnasium.make's

    def save(self, run_dir: Path) -> None:
        """Written atomically: a kill mid-write leaves no half a config."""
        path = run_dir / CONFIG
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, path)

    @classmethod
    def load(cls, run_dir: Path) -> TrainConfig:
        path = run_dir / CONFIG
        if not path.is_file():
            raise RunError(f"{run_dir} is not an optix run directory: {CONFIG} is missing")
        try:
            data = json.loads(path.read_text())
            data["online_tuning"] = {k: tuple(v) for k, v in data.get("online_tuning", {}).items()}
            return cls(**data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise RunError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None


def new_run_dir(root: Path, env_id: str, algo: str) -> Path:
    """A fresh directory under ``root``, named after what it trains and when."""
    if root.exists() and not root.is_dir():
        raise RunError(f"--run-dir {root} is a file, not a directory")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # "/" (gymnasium namespaces) and ":" (environment families) stay out of file names.
    base = f"{env_id.replace('/', '_').replace(':', '-')}-{algo}-{stamp}"
    for n in range(1000):
        candidate = root / (base if n == 0 else f"{base}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"cannot create a run directory under {root}: {exc.strerror}") from None
    raise RunError(f"could not create a fresh run directory under {root}")


def resolve_run_dir(path: str) -> Path:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise RunError(f"run directory {path} does not exist")
    TrainConfig.load(run_dir)
    return run_dir


class MetricsFile(LoopCallback):
    """Appends one JSON line per evaluation to ``metrics.jsonl``: the window,
    env steps, the raw, smoothed and selection scores, the best so far and the
    scheduler's state. Its clock carries on across a resume."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._elapsed_before = 0.0
        self._start = time.monotonic()
        self._loop: Any = None
        self._in_force: dict[str, float] = {}

    def on_loop_start(self, loop: Any) -> None:
        self._loop = loop
        self._in_force = _numbers(loop.agent.get_hyperparams().params)
        self._start = time.monotonic()
        self._drop_replayed(loop.episode)

    def _drop_replayed(self, window: int) -> None:
        """After a kill, keep only the lines of windows the resumed loop will not
        replay (and no half-written last line)."""
        if not self.path.is_file():
            return
        kept = []
        for raw in self.path.read_text().splitlines():
            try:
                if json.loads(raw)["window"] <= window:
                    kept.append(raw)
            except (ValueError, KeyError, TypeError):
                continue
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        numbers = metrics.metrics
        line: dict[str, Any] = {
            "window": episode_id,
            "env_steps": int(numbers.get("env_steps", 0)),
            "time": round(self._elapsed(), 3),
            "raw": metrics.primary_score,
            "smoothed": numbers.get("smoothed_score"),
            "selection": numbers.get("selection_score"),
            "best": numbers.get("best_score"),
            "best_window": _int_or_none(numbers.get("best_window")),
        }
        if self._loop is not None and self._loop.scheduler is not None:
            line["state"] = self._loop.scheduler.state.value
        line["interval"] = _int_or_none(numbers.get("interval"))
        line = {k: _finite_or_none(v) for k, v in line.items()}
        line["metrics"] = {k: v for k, v in numbers.items() if _finite(v)}
        line["hyperparams"] = dict(self._in_force)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def on_hyperparam_update(self, old: HyperparamSet, new: HyperparamSet) -> None:
        # The loop tunes before it reports a window, so this comes after the
        # window's on_episode_end: the line holds what the window trained with.
        self._in_force = _numbers(new.params)

    def _elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._start

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self._elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._elapsed_before = float(state.get("elapsed", 0.0))
        self._start = time.monotonic()


def env_label(config: Mapping[str, Any]) -> str:
    """The environment a run's ``config.json`` names, with the arguments it was
    built with (``--env-kwarg``): ``CliffWalking-v1 (max_episode_steps=200)``."""
    given = env_arguments(config.get("env_kwargs") or {})
    env_id = str(config.get("env_id", ""))
    return f"{env_id} ({given})" if given else env_id


def env_arguments(env_kwargs: Mapping[str, Any]) -> str:
    """``--env-kwarg`` arguments as the flag takes them: ``max_episode_steps=200, continuous=true``."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in env_kwargs.items())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The evaluations of a run, oldest first, as ``MetricsFile`` wrote them; a line
    cut short by a kill is skipped."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and "window" in line:
            lines.append(line)
    return lines


def _numbers(params: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in params.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and _finite(v)
    }


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _finite_or_none(value: Any) -> Any:
    return value if _finite(value) else None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
