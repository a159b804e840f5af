"""benchmarks/suite.py, one row end to end at a tiny budget: the three sides run,
the result file holds what the README's table is made from, and each optix
side's learning curves are drawn."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from optix_core.selection import SELECTION_SEED

ROOT = Path(__file__).resolve().parents[2]


def test_one_row_runs_end_to_end_and_writes_a_well_formed_result(tmp_path):
    out = tmp_path / "suite.json"
    script = [sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--rows", "CartPole-v1:dqn"]
    tiny = ["--seeds", "0", "--budget", "1500", "--auto-cap", "2", "--eval-episodes", "3"]
    done = subprocess.run(
        [*script, *tiny, "--out", str(out), "--curves", str(tmp_path / "curves")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    runs = {run["side"]: run for run in data["runs"]}
    assert set(runs) == {"auto", "budget", "sb3"}
    for run in runs.values():
        assert run["env_id"] == "CartPole-v1" and run["algo"] == "dqn" and run["seed"] == 0
        assert run["eval_episodes"] == 3 and 8 <= run["eval_mean"] <= 500
        # the episodes that report a policy never chose it: none starts where selection's do
        reported = set(range(run["eval_seed"], run["eval_seed"] + 8))
        assert not reported & set(range(SELECTION_SEED, SELECTION_SEED + 8))
    assert runs["budget"]["stop_reason"] == "max_env_steps (1,500) reached"
    for side in ("auto", "budget"):  # the first evaluation is a record: every run has one
        assert 0 < runs[side]["record_steps"] <= runs[side]["env_steps"]
    assert runs["budget"]["env_steps"] > 1500  # checkpoint selection's episodes count too
    assert runs["auto"]["env_steps"] >= runs["budget"]["env_steps"] or runs["auto"][
        "stop_reason"
    ].startswith("converged")
    # it trains past 1,500 steps (DQN learns from 1,000 on) and says why
    assert "past the budget" in runs["auto"]["stop_reason"], runs["auto"]["stop_reason"]
    (row,) = data["rows"]
    assert set(row["sides"]) == {"auto", "budget", "sb3"}
    assert set(row["targets"]) == {"auto >= budget - 1 SE", "zoo score with <= 50% of its steps"}
    assert "| CartPole-v1 | dqn | 1,500 |" in done.stdout
    for side in ("auto", "budget"):  # optix plot's PNG of each optix side
        image = tmp_path / "curves" / f"CartPole-v1-dqn-{side}.png"
        assert image.read_bytes().startswith(b"\x89PNG")


def test_a_run_past_the_budget_says_whether_it_was_still_improving_there():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import suite
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert suite.past_the_budget(400_000, 300_000, 500_000) == ""
    assert suite.past_the_budget(600_000, None, 500_000) == ""
    assert "still improving past the budget: its last record at 550,000" in (
        suite.past_the_budget(700_000, 550_000, 500_000)
    )
    assert "past the budget by DORMANT's patience: its last record at 367,616" in (
        suite.past_the_budget(551_424, 367_616, 500_000)
    )


def test_a_killed_suite_resumes_its_unfinished_run_and_keeps_its_runs_dir(tmp_path):
    """A row longer than a sitting: killed mid-run, the same command with the same
    --work resumes the run where its last window left it, in the same directory."""
    work, out = tmp_path / "work", tmp_path / "suite.json"
    command = [
        *(sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--rows", "CartPole-v1:dqn"),
        *("--seeds", "0", "--sides", "budget", "--budget", "20000", "--eval-episodes", "3"),
        *("--curves", "", "--work", str(work), "--out", str(out), "--window-size", "128"),
    ]
    parent = work / "CartPole-v1-dqn" / "budget-seed0"
    first = subprocess.Popen(command, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(parent.glob("*/checkpoints/latest-*/manifest.json")):
            assert first.poll() is None and time.monotonic() < deadline, "no window checkpointed"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    (run_dir,) = parent.iterdir()
    assert not (run_dir / "report.json").exists() and not out.exists()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {run_dir}" in again.stdout
    assert list(parent.iterdir()) == [run_dir]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["env_steps"] >= 20000
    assert json.loads((run_dir / "config.json").read_text())["window_size"] == 128
    (run,) = json.loads(out.read_text())["runs"]
    assert run["stop_reason"] == "max_env_steps (20,000) reached"
    assert run["env_steps"] == report["env_steps"] + report["selection_env_steps"]
