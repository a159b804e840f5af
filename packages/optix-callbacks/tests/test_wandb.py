"""WandbCallback against real wandb in offline mode, read back from the run's
``run-<id>.wandb`` file.

wandb 0.31 ships no Python reader of that file (``DataStore`` and ``wandb sync
--view`` are gone), so ``read_records`` below reads its framing (a LevelDB log:
32 KiB blocks of CRC-checked chunks after a 7-byte ``:W&B`` header) and parses
each record with wandb's own protobuf, ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from conftest import run_loop

from optix_core import LoopCallback

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

from optix_callbacks.wandb import WandbCallback, _flatten  # noqa: E402

PROJECT = "optix-test"
# metrics keys the loop adds, logged under names of their own
RENAMED = {
    "env_steps",
    "smoothed_score",
    "best_score",
    "selection_score",
    "val_score",
    "train_score",
    "interval",
    "rollbacks",
}


@pytest.fixture(scope="module", autouse=True)
def wandb_offline(tmp_path_factory: pytest.TempPathFactory):
    """Offline, silent, and every file wandb writes under a temporary directory
    (its service's logs go to WANDB_CACHE_DIR, ~/.cache by default). The
    service process wandb starts is stopped at the end."""
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(root / "runs"),
            "WANDB_CACHE_DIR": str(root / "cache"),
            "WANDB_CONFIG_DIR": str(root / "config"),
            "WANDB_DATA_DIR": str(root / "data"),
            "WANDB_ARTIFACT_DIR": str(root / "artifacts"),
            "WANDB_CONSOLE": "off",  # no stdout capture under pytest
            "WANDB__DISABLE_STATS": "true",  # no system-metrics sampler
            "WANDB_DISABLE_GIT": "true",
            "WANDB_DISABLE_CODE": "true",
        }.items():
            mp.setenv(name, value)
        (root / "runs").mkdir()
        yield root / "runs"
        wandb.teardown()
    assert not _children("wandb"), "wandb's service process outlived the tests"


class Recorder(LoopCallback):
    """What the loop handed its callbacks, to compare the wandb run against."""

    def __init__(self) -> None:
        self.start_hyperparams: dict[str, Any] = {}
        self.evals: list[tuple[int, float, dict[str, float]]] = []
        self.updates: list[dict[str, Any]] = []
        self.improvements: list[tuple[int, float, str]] = []

    def on_loop_start(self, loop: Any) -> None:
        self.start_hyperparams = dict(loop.agent.get_hyperparams().params)

    def on_episode_end(self, episode_id: int, metrics: Any) -> None:
        self.evals.append((episode_id, metrics.primary_score, dict(metrics.metrics)))

    def on_hyperparam_update(self, old: Any, new: Any) -> None:
        self.updates.append(dict(new.params))

    def on_improvement(self, snapshot: Any) -> None:
        self.improvements.append((snapshot.episode_id, snapshot.score, snapshot.snapshot_id))


# ---- reading an offline run back ----------------------------------------------


def read_records(path: Path) -> list[Any]:
    """The records of a complete chunk each; a tail still being written is left out."""
    data = path.read_bytes()
    if len(data) < 7:
        return []
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a wandb transaction log"
    block = 32768
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = block - pos % block
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # a block's zero-filled tail
            pos += left
            continue
        if pos + 7 + length > len(data):
            break
        chunk = data[pos + 7 : pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"bad chunk at {pos} in {path}"
        pos += 7 + length
        pending += chunk
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE.../LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    path: Path
    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    step_metrics: dict[str, str] = field(default_factory=dict)  # name or glob -> step metric
    exited: bool = False


def read_run(path: Path) -> OfflineRun:
    run = OfflineRun(path)
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id = record.run.run_id
            run.config.update({_key(u): json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            run.config.update({_key(u): json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(u): json.loads(u.value_json) for u in record.summary.update})
            for item in record.summary.remove:
                run.summary.pop(_key(item), None)
        elif kind == "metric":
            metric = record.metric
            run.step_metrics[metric.name or metric.glob_name] = metric.step_metric
        elif kind == "exit":
            run.exited = True
    return run


def read_runs(wandb_dir: Path, run_id: str, wait: float = 30.0) -> list[OfflineRun]:
    """Every part of one wandb run id under ``wandb_dir``, oldest first (wandb
    writes each start, resumes included, to its own directory).

    wandb's service process may still be writing a part's file when ``finish()``
    has returned (seen on a loaded machine): each part is read again until it
    holds its exit record, for ``wait`` seconds at most.
    """
    deadline = time.monotonic() + wait
    paths = sorted(
        wandb_dir.glob(f"wandb/offline-run-*-{run_id}*/run-{run_id}.wandb"), key=_started
    )
    while True:
        runs = [read_run(path) for path in paths]
        if all(run.exited for run in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)


def _started(path: Path) -> tuple[str, int]:
    """A part's start: its directory's time (to the second), then the ``-N`` wandb
    appends to a name taken within that second."""
    _, _, started, *rest = path.parent.name.split("-")
    return started, int(rest[1]) if len(rest) > 1 else 0


def _children(name: str) -> list[str]:
    """Processes started by this one whose name contains ``name`` (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        if int(rest.split()[1]) == os.getpid() and name in comm:
            found.append(comm)
    return found


def _scored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if "score/raw" in row]


# ---- tests -----------------------------------------------------------------------


def test_logs_each_evaluation_the_events_the_config_and_the_report(wandb_offline: Path) -> None:
    recorder = Recorder()
    callback = WandbCallback(PROJECT, tags=["test"])
    loop, report = run_loop([recorder, callback], windows=8)

    [run] = read_runs(wandb_offline, callback.run_id)
    assert run.run_id == callback.run_id and run.exited
    assert callback.run is None  # finished

    # every evaluation, with the values the loop handed its callbacks
    rows = _scored(run.history)
    seen = [(w, s, m) for w, s, m in recorder.evals if math.isfinite(s)]
    assert len(seen) >= 4
    assert [row["score/raw"] for row in rows] == [s for _, s, _ in seen]
    assert [row["loop/window"] for row in rows] == [w for w, _, _ in seen]
    assert [row["env_steps"] for row in rows] == [m["env_steps"] for _, _, m in seen]
    assert [row["score/smoothed"] for row in rows] == [m["smoothed_score"] for _, _, m in seen]
    assert [row.get("score/best") for row in rows] == [m.get("best_score") for _, _, m in seen]
    assert [row["loop/interval"] for row in rows] == [m["interval"] for _, _, m in seen]
    for row in rows:
        assert row["loop/state"] in ("ACTIVE", "COOLING", "DORMANT")
        assert row["loop/state_code"] == ("ACTIVE", "COOLING", "DORMANT").index(row["loop/state"])
        assert "loop/rollbacks" in row
        assert {f"hyperparams/{k}" for k in recorder.start_hyperparams} <= set(row)
    for row, (_, _, values) in zip(rows, seen, strict=True):  # the evaluator's own metrics
        own = {k: v for k, v in values.items() if k not in RENAMED and math.isfinite(v)}
        assert {k: row[f"metrics/{k}"] for k in own} == own

    # env steps are the x axis; wandb's own step only counts rows
    assert run.step_metrics == {"env_steps": "", "*": "env_steps"}
    assert all("env_steps" in row for row in run.history)
    assert [row["_step"] for row in run.history] == list(range(len(run.history)))

    # hyperparameter updates and checkpoints
    assert recorder.updates and recorder.improvements  # conftest's tuning makes them fire
    updates = [row for row in run.history if "events/hyperparam_updates" in row]
    assert [row["events/hyperparam_updates"] for row in updates] == list(
        range(1, len(recorder.updates) + 1)
    )
    for row, params in zip(updates, recorder.updates, strict=True):
        assert {k: row[f"hyperparams/{k}"] for k in params} == params
    checkpoints = [row for row in run.history if "checkpoint/score" in row]
    assert [(r["checkpoint/window"], r["checkpoint/score"]) for r in checkpoints] == [
        (w, s) for w, s, _ in recorder.improvements
    ]
    assert run.summary["checkpoint/snapshot_id"] == recorder.improvements[-1][2]

    # config: hyperparameters at the start, agent class, versions
    assert run.config["hyperparams"] == recorder.start_hyperparams
    agent_cls = type(loop.agent)
    assert run.config["agent_class"] == f"{agent_cls.__module__}.{agent_cls.__qualname__}"
    assert run.config["versions"]["optix-core"] == metadata.version("optix-core")
    assert run.config["versions"]["wandb"] == wandb.__version__

    # summary: the final report
    final = report.to_dict()
    assert run.summary["report/stop_reason"] == final["stop_reason"]
    assert run.summary["report/windows"] == final["windows"] == 8
    assert run.summary["report/env_steps"] == final["env_steps"]
    assert run.summary["report/best_score"] == final["best_score"]
    assert run.summary["report/best_window"] == final["best_window"]


def test_a_resumed_run_continues_the_same_wandb_run(wandb_offline: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    first = WandbCallback(PROJECT)
    run_loop([first], windows=4, checkpoint_dir=checkpoints)

    second = WandbCallback(PROJECT)  # a fresh callback, as `optix train --resume` builds
    fresh_id = second.run_id
    assert fresh_id != first.run_id
    recorder = Recorder()
    run_loop([second, recorder], windows=8, checkpoint_dir=checkpoints, resume=True)
    assert second.run_id == first.run_id  # restored from the checkpoint before on_loop_start

    parts = read_runs(wandb_offline, first.run_id)
    assert len(parts) == 2 and all(part.run_id == first.run_id for part in parts)
    before, after = ([row["loop/window"] for row in _scored(p.history)] for p in parts)
    assert before and max(before) <= 4
    assert after == [w for w, s, _ in recorder.evals if math.isfinite(s)] and min(after) > 4
    assert not read_runs(wandb_offline, fresh_id)  # no second wandb run
    # the event counters carry on from the checkpoint
    assert second.counts["hyperparam_updates"] >= first.counts["hyperparam_updates"]


def test_run_dir_config_json_goes_into_the_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    asked = {
        "env_id": "CartPole-v1",
        "algo": "cem",
        "backend": "numpy",
        "seed": 0,
        "hyperparams": {"from_the_file": 3},
        "n_envs": 4,
        "window_size": 200,
        "loop": {"base_interval": 1, "plateau_threshold": 5},
    }
    (run_dir / "config.json").write_text(json.dumps(asked))
    recorder = Recorder()
    callback = WandbCallback(PROJECT, run_dir=run_dir)
    run_loop([recorder, callback], windows=2)

    [run] = read_runs(run_dir, callback.run_id)  # wandb wrote under the run directory
    for key, value in asked.items():
        if key != "hyperparams":
            assert run.config[key] == value
    # the hyperparameters in force, over the ones the file asked for
    assert run.config["hyperparams"] == {"from_the_file": 3, **recorder.start_hyperparams}


def test_the_report_is_flattened_for_the_summary() -> None:
    report = {
        "stop_reason": "converged",
        "best_score": None,
        "final_eval": {"mean": 499.5, "std": 1.5, "episodes": 5, "returns": [500.0, 499.0]},
        "pipeline": {"n_envs": 4},
    }
    assert dict(_flatten(report, "report")) == {
        "report/stop_reason": "converged",
        "report/final_eval/mean": 499.5,
        "report/final_eval/std": 1.5,
        "report/final_eval/episodes": 5,
        "report/pipeline/n_envs": 4,
    }


def test_missing_wandb_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'optix-callbacks\[wandb\]'"):
        WandbCallback(PROJECT)


def test_importing_the_module_does_not_import_wandb() -> None:
    code = (
        "import sys, optix_callbacks, optix_callbacks.wandb\n"
        "assert 'wandb' not in sys.modules, 'wandb imported'\n"
        "assert optix_callbacks.WandbCallback is optix_callbacks.wandb.WandbCallback\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_optix_train_wandb_logs_the_run_and_its_resume_to_one_wandb_run(
    wandb_offline: Path, tmp_path: Path
) -> None:
    from optix_core.cli import main

    train = ["train", "CartPole-v1", "--algo", "cem", "--seed", "0", "--run-dir", str(tmp_path)]
    assert main([*train, "--max-windows", "3", "--wandb", PROJECT]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert main(["train", "--resume", str(run_dir), "--max-windows", "6"]) == 0  # still watched

    (first, *_) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    parts = read_runs(run_dir, first.stem.removeprefix("run-"))  # its records may be unwritten
    assert len(parts) == 2
    assert parts[0].config["env_id"] == "CartPole-v1" and parts[0].config["algo"] == "cem"
    logged = [row["loop/window"] for part in parts for row in _scored(part.history)]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert logged == [json.loads(line)["window"] for line in lines]
    assert parts[1].summary["report/windows"] == 6
