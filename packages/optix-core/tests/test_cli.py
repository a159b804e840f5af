"""The optix command, end to end in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def optix(
    *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "optix_core.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["train", "NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
        (["train", "CartPole-v1", "--algo", "no-such-algo"], "unknown algorithm 'no-such-algo'"),
        (["train", "CartPole-v1", "--algo", "cem", "--backend", "nope"], "no 'nope' backend"),
        (
            ["train", "CartPole-v1", "--algo", "cem", "--hp", "population_size=1"],
            "outside its valid range",
        ),
        (["train", "CartPole-v1", "--algo", "cem", "--hp", "elite_frac=2"], "elite_frac=2"),
        (
            ["train", "CartPole-v1", "--algo", "cem", "--hp", "popsize=8"],
            "unknown hyperparameter 'popsize'",
        ),
        (["train", "CartPole-v1", "--max-episodes", "0"], "--max-episodes must be >= 1"),
        (["train", "--resume", "no/such/run"], "run directory no/such/run does not exist"),
        (["eval", "no/such/run"], "run directory no/such/run does not exist"),
        (["train"], "train needs an environment id"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(args, says, tmp_path):
    result = optix(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("optix: error: ")
    assert says in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists(), "no run directory for a run that never started"


def test_an_action_space_the_algorithm_does_not_support(tmp_path):
    """The example plugin's hill-climb is discrete-only (installed in the dev env)."""
    result = optix("train", "Pendulum-v1", "--algo", "hill-climb", cwd=tmp_path)
    assert result.returncode == 2
    assert "supports discrete action spaces, not continuous" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_is_a_table_of_algorithms():
    result = optix("list")
    assert result.returncode == 0, result.stderr
    header, _rule, *rows = result.stdout.splitlines()
    assert header.split() == ["algorithm", "backend", "actions", "policy", "summary", "plugin"]
    cem = next(r for r in rows if r.startswith("cem "))
    assert "numpy" in cem and "discrete,continuous" in cem and cem.rstrip().endswith("optix-core")


def test_plugins_is_json_with_versions_and_hooks():
    result = optix("plugins")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    core = plugins["optix-core"]
    assert core["error"] is None
    assert core["version"] == "0.1.0"
    assert set(core["hooks"]) == {"optix_register_agents", "optix_register_evaluators"}


def test_train_converges_stops_by_itself_and_reports(tmp_path):
    result = optix(
        "train", "CartPole-v1", "--algo", "cem", "--seed", "0", "--run-dir", "out", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["stop_reason"].startswith("converged")
    assert report["final_state"] == "DORMANT"
    assert report["final_eval"]["mean"] >= 475
    assert len(report["final_eval"]["returns"]) == 20
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == sum(1 for x in result.stdout.splitlines() if x.startswith("[loop] ep="))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "cem" and config["seed"] == 0
    assert any(p.name.startswith("best-") for p in (run_dir / "checkpoints").iterdir())
    for heading in ("Reason", "Best score", "Val score", "Env steps", "Wall time", "Final eval"):
        assert heading in result.stdout

    evaluated = optix("eval", str(run_dir), "--episodes", "5", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "over 5 episodes" in evaluated.stdout


def test_resume_after_sigkill_continues_the_counter_and_the_scheduler(tmp_path):
    """Kill a training process, then --resume: the window counter and the
    scheduler carry on from the last snapshot instead of starting over."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optix_core.cli",
            "train",
            "CartPole-v1",
            "--algo",
            "cem",
            "--seed",
            "3",
            "--run-dir",
            "out",
            "--hp",
            "init_std=0.05",
            "--hp",
            "noise_std=0.01",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = list((tmp_path / "out").glob("*/metrics.jsonl"))
            if runs and len(runs[0].read_text().splitlines()) >= 5:
                break
            time.sleep(0.05)
        else:
            pytest.fail("training wrote no metrics in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_dir = runs[0].parent
    # A kill between writing a new latest snapshot and pruning the old leaves two: newest wins.
    latest = max((run_dir / "checkpoints").glob("latest-*"), key=lambda p: p.name)
    state = json.loads((latest / "manifest.json").read_text())["loop_state"]
    stopped_at = state["episode"]
    assert stopped_at >= 3

    result = optix(
        "train", "--resume", str(run_dir), "--max-episodes", str(stopped_at + 12), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming {run_dir} at window {stopped_at + 1}" in result.stdout
    first_eval = next(x for x in result.stdout.splitlines() if x.startswith("[loop] ep="))
    assert int(first_eval.split("ep=")[1].split()[0]) == state["scheduler"]["next_eval_episode"]
    windows = [
        json.loads(x)["window"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    resumed = windows[windows.index(stopped_at) + 1 :] if stopped_at in windows else windows
    assert resumed and resumed[0] > stopped_at
    report = json.loads((run_dir / "report.json").read_text())
    assert report["episodes"] == stopped_at + 12 or report["stop_reason"].startswith("converged")


def test_tune_adapts_hyperparameters_online_and_records_it(tmp_path):
    result = optix(
        "train",
        "CartPole-v1",
        "--algo",
        "cem",
        "--seed",
        "0",
        "--tune",
        "--max-episodes",
        "6",
        "--run-dir",
        "out",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["online_tuning"]["noise_std"] == ["log_float", 0.001, 0.3]
    (latest,) = (run_dir / "checkpoints").glob("latest-*")
    tuned = json.loads((latest / "manifest.json").read_text())["hyperparams"]["params"]
    assert tuned != config["hyperparams"], "SPSA's probes reach the agent's hyperparameters"
