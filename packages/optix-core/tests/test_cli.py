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
            ["train", "CartPole-v1", "--algo", "cem", "--hp", "elite_frac=high"],
            "elite_frac='high' is not a number",
        ),
        (
            ["train", "CartPole-v1", "--algo", "cem", "--hp", "popsize=8"],
            "unknown hyperparameter 'popsize'",
        ),
        (["train", "CartPole-v1", "--max-episodes", "0"], "--max-windows must be >= 1"),
        (["train", "CartPole-v1", "--max-steps", "0"], "--max-steps must be >= 1"),
        (["train", "CartPole-v1", "--seed", "-1"], "--seed must be >= 0"),
        (["train", "CartPole-v1", "--n-envs", "0"], "--n-envs must be >= 1"),
        (["train", "CartPole-v1", "--window-size", "0"], "--window-size must be >= 1"),
        (["train", "CartPole-v1", "--selection-share", "0"], "--selection-share must be > 0"),
        (["train", "CartPole-v1", "--no-early-stop"], "--no-early-stop needs --max-steps"),
        (["train", "CartPole-v1", "--env-kwarg", "gravity"], "--env-kwarg takes KEY=VALUE"),
        (
            ["train", "CartPole-v1", "--env-kwarg", "gravity=3"],
            "CartPole-v1 does not take the arguments {'gravity': 3}",
        ),
        (["train", "--resume", "no/such/run"], "run directory no/such/run does not exist"),
        (["eval", "no/such/run"], "run directory no/such/run does not exist"),
        (["train"], "train needs an environment id"),
        (
            ["train", "Pendulum-v1", "--algo", "dqn"],
            "supports discrete action spaces, not continuous",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(args, says, tmp_path):
    assert_usage_error(optix(*args, cwd=tmp_path), says)
    assert not (tmp_path / "runs").exists(), "no run directory for a run that never started"


def test_hp_values_read_as_json_or_pythons_words_else_as_strings():
    from optix_core.cli.args import parse_hyperparams

    pairs = ["a=3e-4", "b=true", "c=True", "d=False", "e=None", "f=[64, 64]", "g=tanh", "h="]
    assert parse_hyperparams(pairs) == {
        "a": 3e-4,
        "b": True,
        "c": True,
        "d": False,
        "e": None,
        "f": [64, 64],
        "g": "tanh",
        "h": "",
    }


@pytest.mark.parametrize(
    ("max_steps", "max_windows", "warned"),
    [
        (9_984, None, True),  # 39 windows of 256 steps
        (9_985, None, False),  # the 40th window runs to its end: 10,240
        (None, 39, True),
        (None, 40, False),
        (100_000, 39, True),  # whichever budget comes first stops the run
    ],
)
def test_a_budget_that_ends_before_the_first_update_is_said_so(
    max_steps, max_windows, warned, capsys
):
    """rl-zoo's Pendulum TD3 acts at random for its first 10,000 steps; a run
    that ends sooner hands back the policy it started with, and is told."""
    from types import SimpleNamespace

    from optix_core.cli.train import _warn_budget_without_learning

    config = SimpleNamespace(
        algo="td3",
        hyperparams={"learning_starts": 10_000, "train_freq": 200},
        n_envs=1,
        max_env_steps=max_steps,
        max_windows=max_windows,
    )
    _warn_budget_without_learning(config, window_steps=256)
    said = capsys.readouterr().err
    assert ("optix: warning: " in said) == warned
    if warned:
        assert "ends before td3 first learns, after 10,200 env steps" in said
        assert said.count("\n") == 1  # once, for the first budget it concerns


SHORT_ENVS = """
import gymnasium as gym
import numpy as np


class FiveSteps(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (4,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(4, dtype=np.float32), 1.0, self.t == 5, False, {}


class LongEpisodes(FiveSteps):
    def step(self, action):
        self.t += 1
        return np.zeros(4, dtype=np.float32), 1.0, self.t == 1000, False, {}


gym.register("FiveSteps-v0", entry_point=FiveSteps)
gym.register("LongEpisodes-v0", entry_point=LongEpisodes, max_episode_steps=1000)
gym.register("LimitedFiveSteps-v0", entry_point=FiveSteps, max_episode_steps=100)
"""


def train_short(
    tmp_path: Path, env_id: str, *args: str
) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """``optix train short_envs:ENV_ID --algo cem ARGS --run-dir out`` in ``tmp_path``,
    which it ran well; the environment variables that import ``short_envs``."""
    (tmp_path / "short_envs.py").write_text(SHORT_ENVS)
    env = {"PYTHONPATH": str(tmp_path)}
    result = optix(
        "train", f"short_envs:{env_id}", "--algo", "cem", *args, "--run-dir", "out",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result, env


@pytest.mark.parametrize(
    ("env_id", "warned"), [("FiveSteps-v0", True), ("LimitedFiveSteps-v0", False)]
)
def test_an_environment_without_a_time_limit_is_said_so_with_how_to_give_it_one(
    env_id, warned, tmp_path
):
    """Evaluation waits for episodes to end; where gymnasium registers no limit,
    the user learns before training how long it may wait, and what to do."""
    result, _ = train_short(tmp_path, env_id, "--max-windows", "1")
    said = f"short_envs:{env_id} sets no time limit"
    assert (said in result.stderr) == warned
    if warned:
        assert "evaluation cuts one at 100,000 steps" in result.stderr
        assert "Give it a limit with --env-kwarg max_episode_steps=N" in result.stderr


def test_env_kwargs_build_every_environment_the_run_trains_judges_and_evaluates_on(tmp_path):
    """FiveSteps pays 1 a step for 5 steps; limited to 3, every score is 3: the
    training episodes', the judged candidates' and optix eval's."""
    limit = ("--env-kwarg", "max_episode_steps=3")
    result, env = train_short(tmp_path, "FiveSteps-v0", "--max-windows", "2", *limit)
    assert "sets no time limit" not in result.stderr  # it has one now
    (run_dir,) = (tmp_path / "out").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["env_kwargs"] == {
        "max_episode_steps": 3
    }
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {m["raw"] for m in metrics} == {3.0}  # the training episodes'
    assert {m["selection"] for m in metrics} == {3.0}  # the judged candidates'
    assert json.loads((run_dir / "report.json").read_text())["best_score"] == 3.0
    evaluated = optix("eval", str(run_dir), "--json", "--episodes", "4", cwd=tmp_path, env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["mean"] == 3.0


def test_a_run_that_learned_nothing_says_so_and_how_to_go_on(tmp_path):
    """FiveSteps pays 5 whatever the policy does: DORMANT, and the flat score
    is named for what it is (Acrobot's -500 when exploration never reached the goal)."""
    result, _ = train_short(tmp_path, "LimitedFiveSteps-v0")
    assert "the training score never moved from 5: nothing was learned" in result.stdout
    assert "optix: the training score never moved from its first value" in result.stdout
    assert "--max-steps N --no-early-stop" in result.stdout


def test_a_run_that_scored_no_window_says_why_and_eval_says_what_to_do(tmp_path):
    result, env = train_short(
        tmp_path, "LongEpisodes-v0", "--max-windows", "1", "--window-size", "8"
    )
    assert "Best score       : n/a: no window was scored (none ended an episode" in result.stdout
    (run_dir,) = (tmp_path / "out").iterdir()
    evaluated = optix("eval", str(run_dir), cwd=tmp_path, env=env)
    assert_usage_error(evaluated, "has no best checkpoint to evaluate yet: no window of it was")
    assert "optix train --resume continues it" in evaluated.stderr


def assert_usage_error(result: subprocess.CompletedProcess, says: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("optix: error: ")
    assert says in lines[0]
    assert "Traceback" not in result.stderr


def test_a_run_dir_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    result = optix("train", "CartPole-v1", "--algo", "cem", "--run-dir", "runs", cwd=tmp_path)
    assert_usage_error(result, "--run-dir runs is a file")
    assert (tmp_path / "runs").read_text() == "not a directory"


@pytest.mark.parametrize("command", [["eval", "run"], ["train", "--resume", "run"]])
def test_a_damaged_config_is_a_usage_error_and_nothing_is_written(command, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"env_id": "CartPole-v1"')
    before = sorted(str(p) for p in run.rglob("*"))
    assert_usage_error(optix(*command, cwd=tmp_path), "config.json is damaged")
    assert sorted(str(p) for p in run.rglob("*")) == before


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A short CEM run, stopped by its window budget."""
    tmp_path = tmp_path_factory.mktemp("finished")
    result = optix(
        "train", "CartPole-v1", "--algo", "cem", "--seed", "1", "--max-windows", "3",
        "--run-dir", "out", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    return run_dir


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["CartPole-v1"], "the environment"),
        (["--algo", "cem"], "--algo"),
        (["--backend", "numpy"], "--backend"),
        (["--seed", "0"], "--seed"),
        (["--hp", "noise_std=0.1"], "--hp"),
        (["--n-envs", "2"], "--n-envs"),
        (["--window-size", "64"], "--window-size"),
        (["--tune"], "--tune"),
        (["--env-kwarg", "max_episode_steps=100"], "--env-kwarg"),
    ],
)
def test_resume_refuses_flags_that_would_change_the_run(extra, flag, finished_run, tmp_path):
    result = optix("train", "--resume", str(finished_run), *extra, cwd=tmp_path)
    assert_usage_error(result, f"{flag} would change it")


def test_eval_with_a_negative_seed_or_no_episodes_is_a_usage_error(finished_run):
    assert_usage_error(optix("eval", str(finished_run), "--seed", "-1"), "--seed must be >= 0")
    assert_usage_error(optix("eval", str(finished_run), "--episodes", "0"), "--episodes must be")


def test_eval_json_is_the_evaluation_for_scripts(finished_run):
    result = optix("eval", str(finished_run), "--episodes", "3", "--seed", "7", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["episodes"] == len(data["returns"]) == 3 and data["seed"] == 7
    assert data["mean"] == pytest.approx(sum(data["returns"]) / 3)
    assert data["snapshot"].startswith("best-")


def test_a_finished_run_resumes_only_with_a_larger_budget(finished_run, tmp_path):
    assert_usage_error(
        optix("train", "--resume", str(finished_run), cwd=tmp_path),
        "give a larger --max-windows or --max-steps",
    )
    assert_usage_error(
        optix("train", "--resume", str(finished_run), "--max-episodes", "0", cwd=tmp_path),
        "--max-windows must be >= 1",
    )


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
    assert len(lines) == sum(
        1 for x in result.stdout.splitlines() if x.startswith("[loop] window=")
    )
    handed_back = lines[-1]["best_window"], lines[-1]["best"]
    if report["runoff"] and report["runoff"]["winner"] == "final":
        handed_back = report["windows"], report["runoff"]["final"]["mean"]
    assert (report["best_window"], report["best_score"]) == handed_back
    assert report["final_eval"]["env_steps"] > 0 and report["selection_env_steps"] > 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "cem" and config["seed"] == 0
    assert config["loop"]["solved_score"] == 475  # CartPole-v1's reward_threshold
    assert "CartPole-v1 counts as solved at a score of 475" in result.stdout
    assert any(p.name.startswith("best-") for p in (run_dir / "checkpoints").iterdir())
    for heading in ("Reason", "Best score", "Val score", "Env steps", "Wall time", "Final eval"):
        assert heading in result.stdout

    evaluated = optix("eval", str(run_dir), "--episodes", "5", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "over 5 episodes" in evaluated.stdout


def test_the_rollout_is_the_users_where_given_and_recorded(tmp_path):
    """--n-envs and --window-size (SB3's n_envs and n_steps) replace the preset's rollout."""
    result = optix(
        "train", "CartPole-v1", "--algo", "cem", "--seed", "0", "--n-envs", "3",
        "--window-size", "40", "--max-windows", "2", "--run-dir", "out", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["n_envs"], config["window_size"]) == (3, 40)
    assert json.loads((run_dir / "report.json").read_text())["env_steps"] == 2 * 3 * 40


OPTIX = [sys.executable, "-m", "optix_core.cli"]
CEM_ARGS = ["--algo", "cem", "--hp", "init_std=0.05", "--hp", "noise_std=0.01"]


def start_training(tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*OPTIX, "train", "CartPole-v1", *CEM_ARGS, "--seed", "3", "--run-dir", "out", *extra],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended (exit {proc.returncode}) before {what}")
        time.sleep(0.001)
    pytest.fail(f"training reached no {what} in time")


def run_dir_of(tmp_path: Path) -> Path | None:
    found = list((tmp_path / "out").glob("*/config.json"))
    return found[0].parent if found else None


def metrics_lines(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]


def kill_points():
    def config_written(tmp):  # before the first window is learned
        return run_dir_of(tmp) is not None

    def five_evaluations(tmp):
        run = run_dir_of(tmp)
        return run is not None and len(metrics_lines(run)) >= 5

    def mid_checkpoint_write(tmp):
        run = run_dir_of(tmp)
        return (
            run is not None
            and len(metrics_lines(run)) >= 2
            and any((run / "checkpoints").glob(".tmp-*"))
        )

    return [config_written, five_evaluations, mid_checkpoint_write]


def test_a_run_killed_and_resumed_is_the_run_never_killed(tmp_path):
    """SIGKILL after five evaluations, then --resume: the interrupted episodes go
    on, and the run reports every window, its checkpoints and its final
    evaluation as the same command that was never killed."""
    budget = ["--max-windows", "40"]
    (tmp_path / "killed").mkdir()
    (tmp_path / "never").mkdir()
    proc = start_training(tmp_path / "killed", *budget)
    try:
        wait_for(lambda: five_evaluations(tmp_path / "killed"), proc, "five evaluations")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = run_dir_of(tmp_path / "killed")
    resumed = optix("train", "--resume", str(killed), cwd=tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "the interrupted episodes going on" in resumed.stdout
    never = optix(
        "train",
        "CartPole-v1",
        *CEM_ARGS,
        "--seed",
        "3",
        "--run-dir",
        "out",
        *budget,
        cwd=tmp_path / "never",
    )
    assert never.returncode == 0, never.stderr
    unkilled = run_dir_of(tmp_path / "never")

    def outcome(run: Path) -> tuple[list[dict], dict]:
        lines = [{k: v for k, v in line.items() if k != "time"} for line in metrics_lines(run)]
        report = json.loads((run / "report.json").read_text())
        # snapshot ids count writes: the killed run wrote the window it lost twice
        return lines, {k: v for k, v in report.items() if k not in ("wall_time", "best_snapshot")}

    assert outcome(killed) == outcome(unkilled)


def five_evaluations(tmp: Path) -> bool:
    run = run_dir_of(tmp)
    return run is not None and len(metrics_lines(run)) >= 5


@pytest.mark.parametrize("killed_at", kill_points(), ids=lambda f: f.__name__)
def test_sigkill_at_any_moment_then_resume_completes_replaying_no_evaluated_window(
    killed_at, tmp_path
):
    proc = start_training(tmp_path)
    try:
        wait_for(lambda: killed_at(tmp_path), proc, killed_at.__name__)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_dir = run_dir_of(tmp_path)
    evaluated = [line["window"] for line in metrics_lines(run_dir)]
    latest = sorted((run_dir / "checkpoints").glob("latest-*"), key=lambda p: p.name)
    done = json.loads((latest[-1] / "manifest.json").read_text())["loop_state"] if latest else {}
    saved_window = done.get("episode", 0)
    # Whatever the kill interrupted, the snapshot holds the last evaluated window, or
    # the evaluated window before it where the kill came while that one was saved.
    assert saved_window >= (evaluated[-2] if len(evaluated) > 1 else 0)

    budget = saved_window + 6
    result = optix("train", "--resume", str(run_dir), "--max-windows", str(budget), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resuming {run_dir} at window {saved_window + 1}" in result.stdout
    if done:
        first = next(x for x in result.stdout.splitlines() if x.startswith("[loop] window="))
        assert int(first.split("window=")[1].split()[0]) == done["scheduler"]["next_eval_episode"]
    windows = [line["window"] for line in metrics_lines(run_dir)]
    assert windows == sorted(set(windows)), "no window is reported twice"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["windows"] == budget or report["stop_reason"].startswith("converged")
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_a_second_ctrl_c_while_the_first_is_handled_prints_a_line_and_the_run_resumes(
    monkeypatch, capsys, tmp_path
):
    from optix_core import loop as loop_module
    from optix_core.cli import main

    step = loop_module.RLOptimizer._step

    def interrupted_at_window_4(self, *args):
        if self.episode == 3:
            raise KeyboardInterrupt  # the first Ctrl-C
        return step(self, *args)

    def interrupted_again(self, agent):
        raise KeyboardInterrupt  # the second, while the best policy is restored

    monkeypatch.setattr(loop_module.RLOptimizer, "_step", interrupted_at_window_4)
    monkeypatch.setattr(loop_module.RLOptimizer, "_restore_best", interrupted_again)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "CartPole-v1", *CEM_ARGS, "--seed", "3", "--run-dir", "out"])
    out = capsys.readouterr().out
    assert code == 130
    run = run_dir_of(tmp_path).relative_to(tmp_path)
    assert "interrupted again" in out and f"optix train --resume {run}" in out
    result = optix(
        "train", "--resume", str(run_dir_of(tmp_path)), "--max-windows", "6", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "at window 4" in result.stdout


def test_a_run_stopped_by_ctrl_c_resumes_without_a_new_budget(monkeypatch, capsys, tmp_path):
    from optix_core import loop as loop_module
    from optix_core.cli import main

    step = loop_module.RLOptimizer._step

    def interrupted_at_window_4(self, *args):
        if self.episode == 3:
            raise KeyboardInterrupt
        return step(self, *args)

    monkeypatch.setattr(loop_module.RLOptimizer, "_step", interrupted_at_window_4)
    monkeypatch.chdir(tmp_path)
    args = ["train", "CartPole-v1", *CEM_ARGS, "--seed", "3", "--max-windows", "6"]
    assert main([*args, "--run-dir", "out"]) == 0
    capsys.readouterr()
    run_dir = run_dir_of(tmp_path)
    assert json.loads((run_dir / "report.json").read_text())["stop_reason"] == "interrupted"
    spent = optix("train", "--resume", str(run_dir), "--max-windows", "3", cwd=tmp_path)
    assert_usage_error(spent, "--max-windows 3 would stop it at once")
    assert json.loads((run_dir / "report.json").read_text())["stop_reason"] == "interrupted"
    result = optix("train", "--resume", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "at window 4" in result.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert report["windows"] == 6 or report["stop_reason"].startswith("converged")


def test_eval_of_a_run_still_training_does_not_disturb_it(tmp_path):
    proc = start_training(tmp_path, "--max-windows", "40")
    try:
        wait_for(
            lambda: (
                (run := run_dir_of(tmp_path)) is not None
                and any((run / "checkpoints").glob("best-*"))
            ),
            proc,
            "a best checkpoint",
        )
        run_dir = run_dir_of(tmp_path)
        for _ in range(3):
            evaluated = optix("eval", str(run_dir), "--episodes", "2", cwd=tmp_path)
            assert evaluated.returncode == 0, evaluated.stderr
        assert proc.wait(timeout=240) == 0
    finally:
        proc.kill()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["windows"] == 40 or report["stop_reason"].startswith("converged")
    again = optix("train", "--resume", str(run_dir), "--max-windows", "50", cwd=tmp_path)
    assert again.returncode == 0 or "has finished (converged" in again.stderr


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
        "12",
        "--run-dir",
        "out",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["online_tuning"]["noise_std"] == ["log_float", 0.001, 0.3]
    latest = max((run_dir / "checkpoints").glob("latest-*"), key=lambda p: p.name)
    tuned = json.loads((latest / "manifest.json").read_text())["hyperparams"]["params"]
    assert tuned != config["hyperparams"], "SPSA's probes reach the agent's hyperparameters"


def test_sigterm_repeated_while_the_run_reports_still_leaves_its_report(tmp_path):
    # A TERM to the process group, and the copy a wrapper (uv run) forwards after it.
    train = [sys.executable, "-m", "optix_core.cli", "train", "CartPole-v1", *CEM_ARGS]
    # A run that cannot end on its own before the TERM arrives, however late this
    # process reads its first line on a busy machine.
    endless = ["--no-early-stop", "--max-windows", "100000"]
    process = subprocess.Popen(
        [*train, *endless, "--seed", "0", "--run-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    while not process.stdout.readline().startswith("[loop]"):
        pass
    while process.poll() is None:
        process.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    out, err = process.communicate()
    assert process.returncode == 0, out + err
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["stop_reason"] == "interrupted"
