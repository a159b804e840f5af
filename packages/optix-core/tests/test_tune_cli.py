"""``optix tune``, end to end in subprocesses, with the framework-free agent."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optix_core.algorithms.cem_config import DEFAULTS, SEARCH_SPACE
from optix_core.runs import TrainConfig
from optix_core.trials.rl_trial import TRAIN_STEPS

OPTIX = str(Path(sys.executable).with_name("optix"))


def optix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``optix`` command, as a user runs it."""
    return subprocess.run(
        [OPTIX, *args],
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
        (["tune", "--resume", "no/such/run"], "tune run directory no/such/run does not exist"),
        (["tune", "show"], "tune show needs a tune run directory"),
        (["tune", "CartPole-v1", "--algo", "cem", "--timeout", "-1"], "--timeout must be >= 0"),
        (["tune", "CartPole-v1", "--algo", "cem", "--n-envs", "0"], "--n-envs must be >= 1"),
        (
            ["tune", "Pendulum-v1", "--algo", "td3", "--trial-steps", "6000"],
            "--trial-steps 6,000 ends before td3 first learns, after 10,200 env steps",
        ),
        (
            ["tune", "CartPole-v1", "--algo", "dqn", "--then-train", "--max-windows", "1"],
            "--max-windows 1 (256 env steps) ends before dqn first learns",
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
    assert numbers == list(range(8)), "the budget exactly"
    assert any(line.startswith("optix: best trial ") for line in lines)

    (run_dir,) = (tmp_path / "out").iterdir()
    assert run_dir.name.startswith("CartPole-v1-cem-tune-")
    assert (run_dir / "study.journal").is_file(), "two workers, no --storage: a journal file"
    summary = json.loads((run_dir / "tune.json").read_text())
    assert summary["best_params"].keys() == SEARCH_SPACE.keys()
    assert summary["trials"] >= len(numbers)
    assert summary["env_steps"] >= 4000 * len(numbers)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal"))
    )
    study = optuna.load_study(study_name="CartPole-v1-cem", storage=storage)
    assert study.best_trial.number == summary["best_trial"]
    assert study.best_value == summary["best_score"]
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    baseline = study.trials[0]
    assert baseline.params == {k: DEFAULTS[k] for k in SEARCH_SPACE}, "the defaults go first"
    assert "(baseline: the defaults)" in next(
        line for line in lines if line.startswith("trial   0")
    )


def test_then_train_trains_with_the_best_configuration(tmp_path):
    rollout = ["--n-envs", "3", "--window-size", "40"]
    limit = ["--env-kwarg", "max_episode_steps=20"]  # CartPole scores at most 20
    result = optix(*TUNE, *rollout, *limit, "--then-train", "--max-episodes", "15", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = sorted((tmp_path / "out").iterdir())
    (tune_dir,) = [r for r in runs if "-tune-" in r.name]
    (train_dir,) = [r for r in runs if "-tune-" not in r.name]
    summary = json.loads((tune_dir / "tune.json").read_text())
    best = summary["best_params"]
    config = TrainConfig.load(train_dir)
    assert config.hyperparams.items() >= best.items()
    # Trials trained and scored on the limited CartPole, and so does the run after them.
    assert summary["env_kwargs"] == config.env_kwargs == {"max_episode_steps": 20}
    assert summary["best_score"] <= 20
    assert json.loads((train_dir / "report.json").read_text())["best_score"] <= 20
    assert config.seed == 0 and config.max_windows == 15
    # The trials stepped 3 environments 40 steps a window, and so does the run after them.
    trained = [t.user_attrs[TRAIN_STEPS] for t in journal_study(tune_dir).trials if t.params]
    assert trained and all(steps % 120 == 0 for steps in trained), trained
    assert (config.n_envs, config.window_size) == (3, 40)
    assert (train_dir / "report.json").is_file()
    assert f"run directory {Path('out') / train_dir.name}" in result.stdout
    assert "Training Complete" in result.stdout


# ---- stopping and resuming a sweep ------------------------------------------------------

SWEEP = [
    "tune",
    "CartPole-v1",
    "--algo",
    "cem",
    "--trials",
    "6",
    "--workers",
    "2",
    "--trial-steps",
    "6000",
    "--eval-episodes",
    "4",
    "--seed",
    "0",
    "--run-dir",
    "out",
    "--progress-interval",
    "0",
]


def session_processes(sid: int) -> list[int]:
    """Processes of session ``sid`` still alive (zombies included)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            found.append(int(stat.parent.name))
    return found


def journal_study(run_dir: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal"))
    )
    return optuna.load_study(study_name="CartPole-v1-cem", storage=storage)


def ran_to_an_end(trial) -> bool:
    if trial.state is TrialState.FAIL:
        return "error" in trial.user_attrs
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module")
def stopped_sweep(tmp_path_factory):
    """``optix tune`` stopped by SIGTERM while both workers run trials."""
    cwd = tmp_path_factory.mktemp("stopped")
    proc = subprocess.Popen(
        [OPTIX, *SWEEP],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own session: whatever it leaves behind is findable
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            runs = list((cwd / "out").glob("*")) if (cwd / "out").is_dir() else []
            if not runs or not (runs[0] / "study.journal").is_file():
                continue
            trials = journal_study(runs[0]).get_trials(deepcopy=False)
            running = [t for t in trials if t.state is TrialState.RUNNING and t.user_attrs]
            if sum(map(ran_to_an_end, trials)) >= 1 and len(running) == 2:
                break
        else:
            raise AssertionError("the sweep never had two trials running")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return cwd, runs[0], proc, stdout, stderr


def test_sigterm_stops_every_worker_and_fails_their_trials(stopped_sweep):
    _cwd, run_dir, proc, stdout, stderr = stopped_sweep
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    line = stderr.strip()
    match = re.fullmatch(
        rf"optix: stopped by SIGTERM: trial\(s\) ([\d, ]+) marked FAIL \(not counted in the "
        rf"budget\); continue with optix tune --resume {re.escape(str(Path('out') / run_dir.name))}",
        line,
    )
    assert match, line
    assert "Traceback" not in stdout + stderr
    assert session_processes(proc.pid) == [], "no worker (or helper) left behind"
    trials = journal_study(run_dir).trials
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    stopped = [t for t in trials if "stopped" in t.user_attrs]
    assert [t.number for t in stopped] == [int(n) for n in match[1].split(", ")]
    assert 1 <= len(stopped) <= 2, "the trials the two workers were running"
    assert all(t.state is TrialState.FAIL for t in stopped)
    assert all(t.user_attrs["stopped"] == "stopped by SIGTERM" for t in stopped)
    assert re.search(r"^trial +\d+  running   score ", stdout, re.M), "progress lines"


@pytest.mark.parametrize(
    ("flag", "value", "stored"),
    [
        ("--trial-steps", "5000", "6000"),
        ("--n-envs", "3", "8"),
        ("--window-size", "40", "500"),
        ("--env-kwarg", "max_episode_steps=100", "none"),
    ],
)
def test_resume_refuses_settings_that_would_change_the_sweep(flag, value, stored, stopped_sweep):
    cwd, run_dir, *_ = stopped_sweep
    result = optix("tune", "--resume", str(run_dir), flag, value, cwd=cwd)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"{flag} {value} (it has {stored}) would change what its trials measure" in line


@pytest.fixture(scope="module")
def resumed_sweep(stopped_sweep):
    cwd, run_dir, *_ = stopped_sweep
    result = optix("tune", "--resume", str(run_dir), cwd=cwd)  # its budget and workers
    return cwd, run_dir, result


def test_resume_completes_the_budget_exactly_with_the_same_seeds(resumed_sweep):
    _cwd, run_dir, result = resumed_sweep
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("optix: resuming cem (numpy) on CartPole-v1: 6 trials")
    assert "seed 0," in result.stdout.splitlines()[0]
    trials = journal_study(run_dir).trials
    assert sum(map(ran_to_an_end, trials)) == 6
    assert all(t.user_attrs["seeds"] == [0] for t in trials if ran_to_an_end(t))
    # The resumed samplers draw afresh instead of replaying the first session's draws.
    configurations = [tuple(sorted(t.params.items())) for t in trials if t.params]
    assert len(set(configurations)) == len(configurations)
    summary = json.loads((run_dir / "tune.json").read_text())
    assert summary["seed"] == 0 and summary["best_params"].keys() == SEARCH_SPACE.keys()


def test_show_prints_the_best_trial_and_every_trial(resumed_sweep):
    cwd, run_dir, _ = resumed_sweep
    study = journal_study(run_dir)
    result = optix("tune", "show", str(run_dir), cwd=cwd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("optix: study 'CartPole-v1-cem'") and "seed 0" in lines[0]
    best = study.best_trial
    assert lines[1].startswith(f"best trial {best.number}: score {best.value:.1f} with ")
    assert len(lines) == 2 + len(study.trials)
    stopped = sum("stopped" in t.user_attrs for t in study.trials)
    assert sum("stopped by SIGTERM" in line for line in lines) == stopped >= 1

    result = optix("tune", "show", str(run_dir), "--csv", cwd=cwd)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    assert set(SEARCH_SPACE) <= set(rows[0])
    best_row = rows[best.number]
    assert best_row["state"] == "COMPLETE" and float(best_row["score"]) == best.value


def test_train_reuses_what_a_sweep_found_with_hp_file(resumed_sweep):
    cwd, run_dir, _ = resumed_sweep
    summary = json.loads((run_dir / "tune.json").read_text())
    result = optix(
        "train",
        "--hp-file",
        str(run_dir / "tune.json"),
        "--max-windows",
        "2",
        "--n-envs",
        "2",
        "--run-dir",
        "t",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (train_dir,) = (cwd / "t").iterdir()
    config = TrainConfig.load(train_dir)
    assert config.env_id == "CartPole-v1" and config.algo == "cem", "from tune.json"
    assert config.hyperparams.items() >= summary["best_params"].items()
    assert (config.n_envs, config.window_size) == (2, summary["window_size"]), "--n-envs wins"


def test_a_damaged_rollout_in_hp_file_is_refused(resumed_sweep, tmp_path):
    _, run_dir, _ = resumed_sweep
    summary = json.loads((run_dir / "tune.json").read_text())
    (tmp_path / "tune.json").write_text(json.dumps({**summary, "window_size": "500"}))
    result = optix("train", "--hp-file", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "window_size must be a whole number >= 1, got '500'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_hp_file_for_another_algorithm_is_refused(resumed_sweep, tmp_path):
    _, run_dir, _ = resumed_sweep
    result = optix("train", "--algo", "ppo", "--hp-file", str(run_dir), cwd=tmp_path)
    assert result.returncode == 2
    assert "holds hyperparameters tuned for cem, not ppo" in result.stderr


def test_ctrl_c_stops_a_one_worker_sweep(tmp_path):
    proc = subprocess.Popen(
        [OPTIX, *SWEEP[:7], "1", *SWEEP[8:]],  # one worker: the trials run in this process
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            db = list(tmp_path.glob("out/*/study.db"))
            if db and list(tmp_path.glob("out/*/trials/trial-0001")):
                break
        else:
            raise AssertionError("the sweep never reached its second trial")
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGINT, stdout + stderr
    (line,) = stderr.strip().splitlines()
    match = re.match(r"optix: stopped by SIGINT: trial\(s\) (\d+) marked FAIL", line)
    assert match, line
    study = optuna.load_study(study_name="CartPole-v1-cem", storage=f"sqlite:///{db[0]}")
    stopped = study.trials[int(match[1])]
    assert stopped.number >= 1
    assert stopped.state is TrialState.FAIL and stopped.user_attrs["stopped"] == "stopped by SIGINT"
    earlier = [t.state for t in study.trials[: stopped.number]]
    assert earlier == [TrialState.COMPLETE] * stopped.number
