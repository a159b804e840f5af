"""``optix tune``, end to end in subprocesses, with the framework-free agent."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from optix_core.algorithms.cem_config import DEFAULTS, SEARCH_SPACE
from optix_core.runs import TrainConfig


def optix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``optix`` command, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("optix")), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ,
        timeout=300,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FIX_ALL = [arg for key in SEARCH_SPACE for arg in ("--hp", f"{key}={DEFAULTS[key]}")]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["tune"], "tune needs an environment id"),
        (["tune", "NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
        (["tune", "CartPole-v1", "--algo", "no-such-algo"], "unknown algorithm 'no-such-algo'"),
        (["tune", "CartPole-v1", "--algo", "cem", "--trials", "0"], "--trials must be >= 1"),
        (["tune", "CartPole-v1", "--algo", "cem", "--workers", "0"], "--workers must be >= 1"),
        (["tune", "CartPole-v1", "--algo", "cem", "--hp", "popsize=8"], "unknown hyperparameter"),
        (["tune", "CartPole-v1", "--algo", "cem", *FIX_ALL], "the search space is empty"),
        (
            [
                "tune",
                "CartPole-v1",
                "--algo",
                "cem",
                "--workers",
                "2",
                "--storage",
                "sqlite:///s.db",
            ],
            "2 workers cannot share an SQLite file",
        ),
        (
            [
                "tune",
                "CartPole-v1",
                "--algo",
                "cem",
                "--storage",
                "postgresql://x@127.0.0.1:{port}/db",
            ],
            "cannot open tune storage postgresql+psycopg://x@127.0.0.1",
        ),
        (
            ["tune", "CartPole-v1", "--algo", "cem", "--storage", "not a url://"],
            "not a database URL",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(args, says, tmp_path):
    args = [a.format(port=free_port()) for a in args]
    result = optix(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("optix: error: ")
    assert says in lines[0]
    assert not (tmp_path / "runs").exists(), "no run directory for a sweep that never started"


TUNE = [
    "tune",
    "CartPole-v1",
    "--algo",
    "cem",
    "--trials",
    "8",
    "--workers",
    "2",
    "--trial-steps",
    "4000",
    "--eval-episodes",
    "4",
    "--seed",
    "0",
    "--run-dir",
    "out",
]
TRIAL_LINE = re.compile(r"^trial +(\d+) +(COMPLETE|PRUNED) ")


def test_tune_with_two_workers_prints_every_trial_and_the_best(tmp_path):
    result = optix(*TUNE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("optix: tuning cem (numpy) on CartPole-v1: 8 trials")
    numbers = sorted(int(m[1]) for m in map(TRIAL_LINE.match, lines) if m)
    assert numbers == list(range(len(numbers))) and 8 <= len(numbers) <= 9
    assert any(line.startswith("optix: best trial ") for line in lines)

    (run_dir,) = (tmp_path / "out").iterdir()
    assert run_dir.name.startswith("CartPole-v1-cem-tune-")
    assert (run_dir / "study.journal").is_file(), "two workers, no --storage: a journal file"
    summary = json.loads((run_dir / "tune.json").read_text())
    assert summary["best_params"].keys() == SEARCH_SPACE.keys()
    assert summary["trials"] == len(numbers)
    assert summary["env_steps"] >= 4000 * len(numbers)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal"))
    )
    study = optuna.load_study(study_name="CartPole-v1-cem", storage=storage)
    assert study.best_trial.number == summary["best_trial"]
    assert study.best_value == summary["best_score"]
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2


def test_then_train_trains_with_the_best_configuration(tmp_path):
    result = optix(*TUNE, "--then-train", "--max-episodes", "15", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = sorted((tmp_path / "out").iterdir())
    (tune_dir,) = [r for r in runs if "-tune-" in r.name]
    (train_dir,) = [r for r in runs if "-tune-" not in r.name]
    best = json.loads((tune_dir / "tune.json").read_text())["best_params"]
    config = TrainConfig.load(train_dir)
    assert config.hyperparams.items() >= best.items()
    assert config.seed == 0 and config.max_windows == 15
    assert (train_dir / "report.json").is_file()
    assert f"run directory {Path('out') / train_dir.name}" in result.stdout
    assert "Training Complete" in result.stdout
