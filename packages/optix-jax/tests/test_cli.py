"""The optix command with optix-jax, end to end in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

OPTIX = [sys.executable, "-m", "optix_core.cli"]


def optix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*OPTIX, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def finished(tmp_path: Path, result: subprocess.CompletedProcess) -> tuple[Path, dict]:
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    return run_dir, json.loads((run_dir / "report.json").read_text())


@pytest.mark.slow
def test_train_gymnax_cartpole_compiled_stops_by_itself_and_eval_agrees(tmp_path) -> None:
    """``optix train gymnax:CartPole-v1`` picks the jax backend and its preset, trains
    on the compiled pipeline until DORMANT, and the best checkpoint, reloaded in a
    new process by ``optix eval``, scores what the report says."""
    result = optix("train", "gymnax:CartPole-v1", "--seed", "0", "--run-dir", "out", cwd=tmp_path)
    run_dir, report = finished(tmp_path, result)
    assert "training ppo (jax) on gymnax:CartPole-v1" in result.stdout
    assert "uses its tuned settings for gymnax:CartPole-v1" in result.stdout
    assert run_dir.name.startswith("gymnax-CartPole-v1-ppo-")
    assert report["stop_reason"].startswith("converged") and report["final_state"] == "DORMANT"
    assert report["final_eval"]["mean"] >= 475
    evaluated = optix("eval", str(run_dir), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    mean = report["final_eval"]["mean"]
    assert f"{mean:.1f} ± {report['final_eval']['std']:.1f} over 20 episodes" in evaluated.stdout


@pytest.mark.slow
def test_train_cartpole_on_the_jax_backend_stops_by_itself(tmp_path) -> None:
    result = optix(
        "train", "CartPole-v1", "--backend", "jax", "--seed", "0", "--run-dir", "out", cwd=tmp_path
    )
    run_dir, report = finished(tmp_path, result)
    assert "training ppo (jax) on CartPole-v1" in result.stdout
    assert report["stop_reason"].startswith("converged") and report["final_eval"]["mean"] >= 475
    evaluated = optix("eval", str(run_dir), cwd=tmp_path)
    assert f"{report['final_eval']['mean']:.1f} ±" in evaluated.stdout


def test_a_gymnax_run_resumes_where_it_stopped(tmp_path) -> None:
    first = optix(
        "train",
        "gymnax:CartPole-v1",
        "--seed",
        "1",
        "--max-windows",
        "2",
        "--run-dir",
        "out",
        cwd=tmp_path,
    )
    run_dir, report = finished(tmp_path, first)
    assert report["windows"] == 2
    resumed = optix("train", "--resume", str(run_dir), "--max-windows", "4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout and "at window 3" in resumed.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert report["windows"] == 4 and report["env_steps"] == 4 * 32 * 128


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["gymnax:NoSuchEnv-v0"], ["unknown environment 'gymnax:NoSuchEnv-v0'", "CartPole-v1"]),
        (["gymnax:Pendulum-v1", "--algo", "dqn"], ["dqn", "discrete"]),
        (["gymnax:CartPole-v1", "--algo", "cem"], ["compiled_policy()"]),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_no_run(tmp_path, capsys, args, needles) -> None:
    from optix_core.cli import main

    out = tmp_path / "out"
    assert main(["train", *args, "--seed", "0", "--run-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optix: error:") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists() or not any(out.iterdir())
