"""TensorBoard logging for the optix loop, written without TensorFlow.

Every scalar is logged against the run's environment steps, the one axis that
means the same thing across algorithms, tuning settings and a resumed run
(windows differ in length; wall time depends on the machine). Tags:

- ``score/raw``, ``score/smoothed``, ``score/best``: each evaluation's score,
  the scheduler's smoothed score and the best checkpoint's score so far;
  ``score/selection`` (deterministic episodes that judged a candidate
  checkpoint) and ``score/val`` (the held-out pipeline) when the loop has them.
- ``loop/interval``, ``loop/window``, ``loop/rollbacks`` and ``loop/state``,
  the scheduler's state as a number: ACTIVE=0, COOLING=1, DORMANT=2, so that
  backing off and converging show up as steps in one curve.
- ``hyperparams/<name>``: every numeric hyperparameter in force, at each
  evaluation and whenever the tuner changes them, to line changes up with
  the score curves.
- ``checkpoint/score``: the score of each new best checkpoint.
- ``final/<key>``: the numeric fields of the final report
  (``final/final_eval/mean``, ...), at the run's last step.

The events are written with the ``tensorboard`` package's record format and
protos only. Its ``EventFileWriter`` goes through ``tensorboard.compat.tf``,
which imports TensorFlow whenever TensorFlow is installed: seconds of start-up
and gigabytes of memory for a torch or JAX run that only wants curves.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import time
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optix_callbacks.states import STATE_CODES
from optix_core.callbacks import LoopCallback
from optix_core.types import EvalMetrics, HyperparamSet, PolicySnapshot

if TYPE_CHECKING:
    from optix_core.loop import RLOptimizer
    from optix_core.report import LoopReport


# metrics key -> tag, logged at each evaluation when present
_EVAL_TAGS = {
    "smoothed_score": "score/smoothed",
    "best_score": "score/best",
    "selection_score": "score/selection",
    "val_score": "score/val",
    "interval": "loop/interval",
    "rollbacks": "loop/rollbacks",
}

# two writers opened in the same second by one process (a run, then its
# resume) must not share a file name
_file_ids = itertools.count()


class TensorBoardCallback(LoopCallback):
    """Log the loop's scores, state and hyperparameters to TensorBoard.

    ``log_dir`` defaults to ``run_dir / "tensorboard"`` when the CLI passes a
    run directory, else ``./runs/tensorboard``. Each run opens a new event
    file there, so a resumed run appends to the same curves.
    """

    def __init__(self, log_dir: str | Path | None = None, *, run_dir: Path | None = None) -> None:
        self._protos = _import_tensorboard()  # fail before training, not after
        if log_dir is None:
            log_dir = Path(run_dir) / "tensorboard" if run_dir is not None else "runs/tensorboard"
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"log_dir {self.log_dir} is a file, not a directory")
        self._loop: RLOptimizer | None = None
        self._writer: Any = None
        self._hyperparams_logged: dict[str, tuple[int, float]] = {}

    # ---- hooks -----------------------------------------------------------

    def on_loop_start(self, loop: RLOptimizer) -> None:
        self._loop = loop
        if self._writer is None:
            self._writer = self._open()

    def on_episode_end(self, episode_id: int, metrics: EvalMetrics) -> None:
        values = metrics.metrics
        step = int(values.get("env_steps", self._env_steps()))
        self._scalar("score/raw", metrics.primary_score, step)
        for key, tag in _EVAL_TAGS.items():
            if key in values:
                self._scalar(tag, values[key], step)
        self._scalar("loop/window", episode_id, step)
        if self._loop is not None and self._loop.scheduler is not None:
            self._scalar("loop/state", STATE_CODES[self._loop.scheduler.state], step)
        if self._loop is not None and self._loop.agent is not None:
            self._hyperparams(self._loop.agent.get_hyperparams(), step)
        self.flush()  # once per evaluation, so a live TensorBoard keeps up

    def on_hyperparam_update(self, old: HyperparamSet, new: HyperparamSet) -> None:
        self._hyperparams(new, self._env_steps())

    def on_improvement(self, snapshot: PolicySnapshot) -> None:
        self._scalar("checkpoint/score", snapshot.score, self._env_steps())

    def on_loop_stop(self, report: LoopReport) -> None:
        data = report.to_dict()
        step = int(data["env_steps"])
        for tag, value in _flatten(data, "final"):
            self._scalar(tag, value, step)
        self.close()

    # ---- writing ---------------------------------------------------------

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self) -> Any:
        record_writer, event_pb2, _ = self._protos
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # the name TensorBoard looks for ("tfevents") and sorts by (time first)
        name = (
            f"events.out.tfevents.{int(time.time()):010d}."
            f"{socket.gethostname()}.{os.getpid()}.{next(_file_ids)}"
        )
        writer = record_writer(open(self.log_dir / name, "ab"))  # noqa: SIM115 (closed in close())
        version = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        writer.write(version.SerializeToString())
        writer.flush()
        return writer

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if self._writer is None or not _is_number(value) or not math.isfinite(value):
            return
        _, event_pb2, summary_pb2 = self._protos
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]
        )
        event = event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        self._writer.write(event.SerializeToString())

    def _hyperparams(self, hyperparams: HyperparamSet, step: int) -> None:
        # the loop applies a tuner's proposal before the evaluation's hooks
        # fire, so the same values often arrive twice at one step: log once
        for name, value in hyperparams.params.items():
            tag = f"hyperparams/{name}"
            if _is_number(value) and self._hyperparams_logged.get(tag) != (step, value):
                self._hyperparams_logged[tag] = (step, value)
                self._scalar(tag, value, step)

    def _env_steps(self) -> int:
        return 0 if self._loop is None else int(self._loop.pipeline.env_steps)


def _import_tensorboard() -> tuple[Any, Any, Any]:
    try:
        import tensorboard  # noqa: F401 (absent: the error below, not a submodule's)
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as e:
        raise ModuleNotFoundError(
            "TensorBoardCallback needs the tensorboard package: "
            "pip install 'optix-callbacks[tensorboard]'"
        ) from e
    return RecordWriter, event_pb2, summary_pb2


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _flatten(data: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    items = []
    for key, value in data.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}/{key}")
        elif _is_number(value):
            items.append((f"{prefix}/{key}", value))
    return items
