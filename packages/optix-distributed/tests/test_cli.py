"""``optix train --algo impala`` end to end in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import children, wait_gone

OPTIX = [sys.executable, "-m", "optix_core.cli"]


def optix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*OPTIX, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def as_a_terminal_job() -> None:
    """SIGINT at its default, as in a terminal's foreground job. A test run started
    in the background (``cmd &`` in a script) ignores SIGINT, its children inherit
    that through exec, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        kids = [c for p in frontier for c in children(p)]
        found += kids
        frontier = kids
    return found


@pytest.mark.slow
def test_train_impala_with_two_actors_stops_by_itself_and_eval_agrees(tmp_path) -> None:
    result = optix(
        "train", "CartPole-v1", "--algo", "impala", "--actors", "2", "--seed", "0",
        "--run-dir", "out", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert "training impala (torch) on CartPole-v1" in result.stdout
    assert report["stop_reason"].startswith("converged") and report["final_state"] == "DORMANT"
    assert report["final_eval"]["mean"] >= 475
    config = json.loads((run_dir / "config.json").read_text())
    assert config["pipeline_options"] == {"n_actors": 2, "rounds": 8}
    # Every step the actors took and the learner received is in the report.
    assert report["env_steps"] == report["windows"] * 2 * 4 * 16 * 8
    evaluated = optix("eval", str(run_dir), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    mean = report["final_eval"]["mean"]
    assert f"{mean:.1f} ± {report['final_eval']['std']:.1f} over 20 episodes" in evaluated.stdout


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_stopping_a_run_stops_every_actor_and_the_run_resumes(tmp_path, how) -> None:
    """The learner stopped by SIGTERM, or Ctrl-C to the whole process group as a
    terminal sends it: a report saying interrupted, no actor left, and --resume goes on."""
    process = subprocess.Popen(
        [*OPTIX, "train", "CartPole-v1", "--algo", "impala", "--actors", "2", "--seed", "1",
         "--run-dir", "out"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=as_a_terminal_job,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(tmp_path.glob("out/*/metrics.jsonl")):
            time.sleep(0.2)
        actors = descendants(process.pid)
        assert len(actors) >= 2  # two actors (and, with forkserver, the server)
        if how == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    assert wait_gone(actors) == []
    (run_dir,) = (tmp_path / "out").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["stop_reason"].startswith("interrupted")
    resumed = optix("train", "--resume", str(run_dir), "--max-windows", str(report["windows"] + 2),
                    cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The latest snapshot is written after each window: at most the one in progress is lost.
    window = int(re.search(r"at window (\d+)", resumed.stdout).group(1))
    assert report["windows"] <= window <= report["windows"] + 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--algo", "ppo", "--actors", "2"], "--actors and --ray are for actor-learner algorithms"),
        (["--algo", "impala", "--actors", "0"], "--actors must be >= 1, got 0"),
        (["--algo", "impala", "--backend", "jax"], "does not offer 'impala'"),
    ],
)
def test_bad_actor_flags_get_one_clear_line_before_any_work(tmp_path, args, needle) -> None:
    result = optix("train", "CartPole-v1", *args, "--run-dir", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_learner_killed_mid_run_leaves_no_actor_and_resumes_from_its_last_checkpoint(
    tmp_path,
) -> None:
    """SIGKILL gives the learner no chance to stop anything: its actors notice and exit,
    and ``--resume`` continues from the latest snapshot to a converged run."""
    process = subprocess.Popen(
        [*OPTIX, "train", "CartPole-v1", "--algo", "impala", "--seed", "3", "--run-dir", "out"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        windows = 0
        for line in process.stdout:
            windows += line.startswith("[loop]")
            if windows == 5:
                break
        actors = children(process.pid)
        assert len(actors) == 2
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert wait_gone(actors, timeout=10.0) == []
    (run_dir,) = (tmp_path / "out").iterdir()
    assert not (run_dir / "report.json").exists()
    resumed = optix("train", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    window = int(re.search(r"at window (\d+)", resumed.stdout).group(1))
    assert window >= 5
    report = json.loads((run_dir / "report.json").read_text())
    assert report["stop_reason"].startswith("converged") and report["final_eval"]["mean"] >= 475
