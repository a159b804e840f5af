"""Run directories: what ``optix train`` writes and ``--resume`` / ``optix eval`` read.

runs/<env>-<algo>-<time>/
    config.json      what was asked for: env, algorithm, backend, seed, hyperparameters, loop
    checkpoints/     the CheckpointRegistry (best-* and latest-* snapshots)
    metrics.jsonl    one line per evaluation
    report.json      why it stopped, best score, env steps, wall time, final evaluation
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optix_core.callbacks import LoopCallback
from optix_core.types import EvalMetrics

CONFIG = "config.json"
METRICS = "metrics.jsonl"
REPORT = "report.json"
CHECKPOINTS = "checkpoints"


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
    max_episodes: int | None
    loop: dict[str, Any] = field(default_factory=dict)
    online_tuning: dict[str, tuple] = field(default_factory=dict)

    def save(self, run_dir: Path) -> None:
        (run_dir / CONFIG).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, run_dir: Path) -> TrainConfig:
        path = run_dir / CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} is not an optix run directory: {CONFIG} is missing")
        data = json.loads(path.read_text())
        data["online_tuning"] = {k: tuple(v) for k, v in data.get("online_tuning", {}).items()}
        return cls(**data)


def new_run_dir(root: Path, env_id: str, algo: str) -> Path:
    """A fresh directory under ``root``, named after what it trains and when."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{env_id.replace('/', '_')}-{algo}-{stamp}"
    for n in range(1000):
        candidate = root / (base if n == 0 else f"{base}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a fresh run directory under {root}")


def resolve_run_dir(path: str) -> Path:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {path} does not exist")
    TrainConfig.load(run_dir)
    return run_dir


class MetricsFile(LoopCallback):
    """Appends one JSON line per evaluation to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._start = time.monotonic()

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        line = {"window": episode_id, "time": round(time.monotonic() - self._start, 3)}
        line.update(metrics.to_dict())
        line["metrics"] = {k: v for k, v in line["metrics"].items() if _finite(v)}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(line) + "\n")


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
