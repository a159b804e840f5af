"""Weights & Biases logging for the optix loop (tensor-optix 1.10's ``WandbCallback``).

The x axis of every chart is the run's environment steps: ``env_steps`` is
logged with every row and declared the step metric of everything else
(``define_metric``), because windows differ in length between algorithms and
settings. wandb's own ``step`` is left to count rows: it must increase within
a run, and a resumed run replays the windows after its last checkpoint.

Logged keys:

- each evaluation: ``score/raw`` (the evaluator's primary score),
  ``score/smoothed``, ``score/best``, ``score/selection``, ``score/val`` and
  ``score/train`` (when the loop has them), ``loop/window``,
  ``loop/interval``, ``loop/rollbacks``, ``loop/state`` (ACTIVE, COOLING,
  DORMANT) with ``loop/state_code`` (0, 1, 2), the evaluator's other numeric
  metrics as ``metrics/<key>`` and the numeric hyperparameters in force as
  ``hyperparams/<name>``;
- events: ``hyperparams/<name>`` with ``events/hyperparam_updates`` when the
  tuner changes them, ``checkpoint/score`` and ``checkpoint/window`` with
  ``events/improvements`` for each new best checkpoint, and the counters
  ``events/degradations``, ``events/plateaus``, ``events/dormant``.

Non-finite values are left out. The run's config holds the agent's class
and hyperparameters, the optix and framework versions, and, when the CLI
passes its run directory, the run's ``config.json``; the summary holds the
final report (``report/...``, ``report/final_eval/mean``, ...).

The wandb run id is chosen when the callback is built and kept in the loop's
checkpoints (``state_dict``), so ``optix train --resume`` continues the same
wandb run (``resume="allow"``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import secrets
import string
from importlib import metadata
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optix_callbacks.states import STATE_CODES
from optix_core.callbacks import LoopCallback
from optix_core.types import EvalMetrics, HyperparamSet, PolicySnapshot

if TYPE_CHECKING:
    from optix_core.loop import RLOptimizer
    from optix_core.report import LoopReport

log = logging.getLogger("optix")


# EvalMetrics.metrics key -> logged key; every other numeric key is metrics/<key>
_EVAL_KEYS = {
    "env_steps": "env_steps",
    "smoothed_score": "score/smoothed",
    "best_score": "score/best",
    "selection_score": "score/selection",
    "val_score": "score/val",
    "train_score": "score/train",
    "interval": "loop/interval",
    "rollbacks": "loop/rollbacks",
}

# versions recorded in the config besides every installed optix-* distribution;
# read from the package metadata, never by importing the framework
_FRAMEWORKS = (
    "torch",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "tensorflow",
    "keras",
    "gymnasium",
    "numpy",
    "wandb",
)

_COUNTERS = ("hyperparam_updates", "improvements", "degradations", "plateaus", "dormant")


class WandbCallback(LoopCallback):
    """Log a run to Weights & Biases.

    ``project`` and every other keyword (``entity``, ``name``, ``tags``,
    ``mode``, ``settings``...) go to ``wandb.init``. ``run_dir`` (the ``optix
    train`` run directory) is where wandb writes its files and where the
    run's ``config.json`` is read from; without it wandb's default (``WANDB_DIR``
    or the working directory) is used.
    """

    def __init__(
        self, project: str | None = None, *, run_dir: Path | None = None, **init_kwargs: Any
    ) -> None:
        self._wandb = _import_wandb()  # fail before training, not after
        self.project = project
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.init_kwargs = dict(init_kwargs)
        # chosen now, so the first checkpoint already holds it
        self.run_id: str = str(self.init_kwargs.pop("id", None) or _generate_id())
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.run: Any = None
        self._loop: RLOptimizer | None = None

    # ---- resume ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = str(state.get("run_id") or self.run_id)
        self.counts.update({k: int(v) for k, v in state.get("counts", {}).items()})

    # ---- hooks -------------------------------------------------------------

    def on_loop_start(self, loop: RLOptimizer) -> None:
        self._loop = loop
        kwargs = dict(self.init_kwargs)
        config = {**self._config(loop), **kwargs.pop("config", {})}
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("dir", str(self.run_dir))
        kwargs.setdefault("resume", "allow")
        self.run = self._wandb.init(project=self.project, id=self.run_id, config=config, **kwargs)
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        row: dict[str, Any] = {"score/raw": metrics.primary_score, "loop/window": episode_id}
        for key, value in metrics.metrics.items():
            row[_EVAL_KEYS.get(key, f"metrics/{key}")] = value
        if metrics.generalization_gap is not None:
            row["score/generalization_gap"] = metrics.generalization_gap
        loop = self._loop
        if loop is not None and loop.scheduler is not None:
            state = loop.scheduler.state
            row["loop/state"] = state.value
            row["loop/state_code"] = STATE_CODES[state]
        if loop is not None and loop.agent is not None:
            row.update(_hyperparam_row(loop.agent.get_hyperparams()))
        self._log(row)

    def on_hyperparam_update(self, old: HyperparamSet, new: HyperparamSet) -> None:
        self.counts["hyperparam_updates"] += 1
        self._log(
            {**_hyperparam_row(new), "events/hyperparam_updates": self.counts["hyperparam_updates"]}
        )

    def on_improvement(self, snapshot: PolicySnapshot) -> None:
        self.counts["improvements"] += 1
        self._log(
            {
                "checkpoint/score": snapshot.score,
                "checkpoint/window": snapshot.episode_id,
                "events/improvements": self.counts["improvements"],
            }
        )
        if self.run is not None:
            self.run.summary["checkpoint/snapshot_id"] = snapshot.snapshot_id

    def on_degradation(self, episode_id: int, metrics: EvalMetrics) -> None:
        self.counts["degradations"] += 1
        row: dict[str, Any] = {"events/degradations": self.counts["degradations"]}
        if self._loop is not None:
            row["loop/rollbacks"] = self._loop.rollbacks
        self._log(row)

    def on_plateau(self, episode_id: int, metrics: EvalMetrics) -> None:
        self.counts["plateaus"] += 1
        self._log({"events/plateaus": self.counts["plateaus"]})

    def on_dormant(self, episode_id: int) -> None:
        self.counts["dormant"] += 1
        self._log({"events/dormant": self.counts["dormant"]})

    def on_loop_stop(self, report: LoopReport) -> None:
        if self.run is None:
            return
        self.run.summary.update(dict(_flatten(report.to_dict(), "report")))
        self.run.finish()
        self.run = None

    # ---- helpers -----------------------------------------------------------

    def _log(self, values: dict[str, Any]) -> None:
        if self.run is None:
            return
        row = {k: _clean(v) for k, v in values.items()}
        row = {k: v for k, v in row.items() if v is not None}
        if self._loop is not None:
            row.setdefault("env_steps", self._loop.pipeline.env_steps)
            row.setdefault("loop/window", self._loop.episode)
        self.run.log(row)  # no step=: see the module docstring

    def _config(self, loop: RLOptimizer) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.run_dir is not None:
            config.update(_read_run_config(self.run_dir))
        agent = loop.agent
        if agent is not None:
            cls = type(agent)
            params = _jsonable(agent.get_hyperparams().params)
            # the hyperparameters in force now (a resumed run's tuned ones, the
            # defaults the CLI left out) over the ones config.json asked for
            config["hyperparams"] = {**config.get("hyperparams", {}), **params}
            config["agent_class"] = f"{cls.__module__}.{cls.__qualname__}"
        config["versions"] = _versions()
        return config


def _import_wandb() -> Any:
    try:
        import wandb
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"WandbCallback needs wandb ({exc}): pip install 'optix-callbacks[wandb]'",
            name=exc.name,
        ) from exc
    return wandb


def _generate_id(length: int = 8) -> str:
    """A wandb run id: wandb's own format (``wandb.sdk.lib.runid``), without
    its private module (``wandb.util.generate_id`` is gone in wandb 0.31)."""
    chars = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(chars) for _ in range(length))


def _clean(value: Any) -> Any:
    """A loggable value: finite numbers as int or float, strings as they are,
    anything else (NaN, inf, None, lists) left out."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    if isinstance(value, Integral):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def _hyperparam_row(hyperparams: HyperparamSet) -> dict[str, Any]:
    row = {f"hyperparams/{k}": _clean(v) for k, v in hyperparams.params.items()}
    return {k: v for k, v in row.items() if v is not None and not isinstance(v, str)}


def _flatten(data: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """Nested dicts as ``prefix/a/b`` keys; scalars only (lists such as the final
    evaluation's returns, and None, are left out)."""
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            items.extend(_flatten(value, name))
        elif (clean := _clean(value)) is not None:
            items.append((name, clean))
    return items


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("WandbCallback: %s not added to the wandb config: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, tuples and other objects as JSON-ready values."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().replace("_", "-").startswith("optix-"):
            versions[name.lower().replace("_", "-")] = dist.version
    for name in _FRAMEWORKS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
