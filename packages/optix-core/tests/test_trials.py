"""Sweep and TrialOrchestrator: TPE, pruning in env steps, isolated trials, storages, workers.

Objectives that worker processes run are module-level, so they pickle.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optix_core.agent import BaseAgent
from optix_core.algorithms.cem_config import SEARCH_SPACE
from optix_core.checkpoints import CheckpointRegistry
from optix_core.trials import (
    Interrupted,
    StorageError,
    Sweep,
    SweepError,
    SweepSettingsError,
    TrialOrchestrator,
)
from optix_core.trials.factories import RegisteredAgentFactory, VectorPipelineFactory
from optix_core.trials.storage import JOURNAL_FILE, SQLITE_FILE
from optix_core.trials.sweep import SEED_ATTR
from optix_core.trials.threads import available_cores
from optix_core.types import HyperparamSet

BOWL_SPACE = {
    "x": ("float", 0.0, 1.0),
    "y": ("float", -2.0, 2.0),
    "lr": ("log_float", 1e-5, 1e-1),
    "n": ("int", 1, 128),
    "act": ("categorical", "tanh", "relu", "elu"),
}


def bowl(context):
    """A synthetic objective, best (0) at x=0.7, y=1.1, lr=10^-3.5, n=37, act=relu."""
    p = context.params
    return -(
        (p["x"] - 0.7) ** 2
        + ((p["y"] - 1.1) / 4) ** 2
        + ((math.log10(p["lr"]) + 3.5) / 4) ** 2
        + ((p["n"] - 37) / 128) ** 2
        + (0.0 if p["act"] == "relu" else 0.05)
    )


def slow_bowl(context):
    time.sleep(0.3)
    return bowl(context)


def learning_curve(context):
    """Reports at every 1,000 env steps a curve whose height is set by x; counts the steps."""
    for step in range(1000, 10_001, 1000):
        context.add_env_steps(1000)
        if context.report(context.params["x"] * step / 10_000, step):
            raise optuna.TrialPruned()
    return context.params["x"]


def fails_when_x_is_small(context):
    if context.params["x"] < 0.5:
        raise RuntimeError(f"x={context.params['x']:.2f} is too small")
    return context.params["x"]


def always_fails(context):
    raise RuntimeError("the objective is broken")


def stalls_on_trial_1(context):
    """Trial 1 waits to be killed; every other trial takes a moment."""
    time.sleep(60 if context.number == 1 else 0.2)
    return context.params["x"]


def stopped_on_trial_1(context):
    """Trial 1 is stopped by a signal (as SIGTERM in a worker raises it)."""
    if context.number == 1:
        raise Interrupted(signal.SIGTERM)
    return bowl(context)


def report_threads(context):
    """What a worker's frameworks were given: the thread variables and torch's pool."""
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    context.set_attr("omp", os.environ.get("OMP_NUM_THREADS"))
    context.set_attr("torch", torch_threads)
    return 0.0


def journal(tmp_path: Path, name: str = "study") -> str:
    return str(tmp_path / f"{name}.journal")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the sampler ----------------------------------------------------------------


def test_tpe_beats_random_search_with_the_same_budget(tmp_path):
    best = {}
    for sampler in ("tpe", "random"):
        best[sampler] = [
            Sweep(
                bowl,
                BOWL_SPACE,
                n_trials=40,
                run_dir=tmp_path / f"{sampler}-{seed}",
                storage=journal(tmp_path, f"{sampler}-{seed}"),
                seed=seed,
                sampler=sampler,
            ).run()[1]
            for seed in range(5)
        ]
    wins = sum(t > r for t, r in zip(best["tpe"], best["random"], strict=True))
    assert statistics.fmean(best["tpe"]) > statistics.fmean(best["random"]), best
    assert wins >= 4, best


def test_the_same_seed_gives_the_same_sweep(tmp_path):
    a = Sweep(bowl, BOWL_SPACE, 15, run_dir=tmp_path / "a", storage=journal(tmp_path, "a"), seed=3)
    b = Sweep(bowl, BOWL_SPACE, 15, run_dir=tmp_path / "b", storage=journal(tmp_path, "b"), seed=3)
    assert a.run() == b.run()


# ---- pruning --------------------------------------------------------------------


def test_pruner_warmup_is_counted_in_env_steps(tmp_path):
    sweep = Sweep(
        learning_curve,
        {"x": ("float", 0.0, 1.0)},
        n_trials=20,
        storage=journal(tmp_path),
        run_dir=tmp_path,
        seed=0,
        pruner_warmup_steps=5000,
        pruner_startup_trials=3,
    )
    sweep.run()
    pruned = sweep.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "bad configurations are pruned once the warm-up is over"
    for trial in pruned:
        # Never before 5,000 env steps, and at the first report past them.
        assert trial.last_step == 5000
        assert sorted(trial.intermediate_values) == [1000, 2000, 3000, 4000, 5000]
        assert trial.user_attrs["env_steps"] == 5000
    assert all(t.number >= 3 for t in pruned), "the first 3 trials complete unpruned"
    completed = sweep.study.get_trials(states=(TrialState.COMPLETE,))
    assert sweep.env_steps == 10_000 * len(completed) + 5000 * len(pruned)


def test_no_pruning_before_the_warmup_however_bad(tmp_path):
    sweep = Sweep(
        learning_curve,
        {"x": ("float", 0.0, 1.0)},
        n_trials=12,
        storage=journal(tmp_path),
        run_dir=tmp_path,
        seed=0,
        pruner_warmup_steps=10_000,  # the last report
        pruner_startup_trials=1,
    )
    sweep.run()
    pruned = sweep.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned
    assert all(trial.last_step == 10_000 for trial in pruned)


# ---- TrialOrchestrator on real training runs ----------------------------------------


def cem_orchestrator(tmp_path: Path, n_trials: int, **options) -> TrialOrchestrator:
    return TrialOrchestrator(
        RegisteredAgentFactory("cem", "CartPole-v1"),
        VectorPipelineFactory("CartPole-v1", n_envs=8, window_size=250),
        SEARCH_SPACE,
        n_trials=n_trials,
        trial_steps=4000,
        eval_episodes=4,
        seed=0,
        run_dir=tmp_path / "sweep",
        **options,
    )


def test_each_trial_trains_and_checkpoints_in_its_own_directory(tmp_path):
    orchestrator = cem_orchestrator(tmp_path, n_trials=3)  # eval env inferred from the pipeline
    best_params, best_score = orchestrator.run()
    trials = orchestrator.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert best_score == max(t.value for t in trials)
    assert best_params == orchestrator.study.best_trial.params
    assert (tmp_path / "sweep" / SQLITE_FILE).is_file(), "one worker: SQLite in the run directory"
    directories = sorted((tmp_path / "sweep" / "trials").iterdir())
    assert [d.name for d in directories] == ["trial-0000", "trial-0001", "trial-0002"]
    for trial, directory in zip(trials, directories, strict=True):
        (snapshot,) = CheckpointRegistry(directory / "seed-0").snapshots("best")
        assert snapshot.hyperparams.params.items() >= trial.params.items(), "its own weights"
        # Intermediate values sit at env steps: one evaluation per window of 8 x 250.
        assert sorted(trial.intermediate_values) == [2000, 4000]
        # Every step counts: 4,000 training steps and the scoring episodes.
        assert trial.user_attrs["env_steps"] > 4000
    assert orchestrator.env_steps == sum(t.user_attrs["env_steps"] for t in trials)


def test_seeds_per_trial_score_the_mean_of_the_seeds(tmp_path):
    orchestrator = cem_orchestrator(tmp_path, n_trials=2, seeds_per_trial=2)
    orchestrator.run()
    for trial in orchestrator.study.trials:
        assert trial.user_attrs["seeds"] == [0, 1]
        scores = trial.user_attrs["seed_scores"]
        assert len(scores) == 2
        assert trial.value == pytest.approx(statistics.fmean(scores))
        directory = tmp_path / "sweep" / "trials" / f"trial-{trial.number:04d}"
        assert sorted(p.name for p in directory.iterdir()) == ["seed-0", "seed-1"]
        # The second seed reports after the first one's 4,000 steps.
        assert sorted(trial.intermediate_values) == [2000, 4000, 6000, 8000]
        assert trial.user_attrs["env_steps"] > 8000


def test_a_pipeline_of_wrapped_envs_must_name_the_env_to_score_on():
    import gymnasium as gym

    from optix_core.pipeline import BatchPipeline

    def wrapped_pipeline():
        env = gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 2 * r)
        return BatchPipeline(env=env)

    with pytest.raises(ValueError, match="wraps its environment.*give eval_env_id="):
        TrialOrchestrator(
            RegisteredAgentFactory("cem", "CartPole-v1"), wrapped_pipeline, SEARCH_SPACE, 1, 100
        )


# ---- failures ----------------------------------------------------------------------


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = Sweep(
        fails_when_x_is_small,
        {"x": ("float", 0.0, 1.0)},
        10,
        run_dir=tmp_path,
        storage=journal(tmp_path),
        seed=0,
    )
    params, score = sweep.run()
    failed = sweep.study.get_trials(states=(TrialState.FAIL,))
    assert failed and all("is too small" in t.user_attrs["error"] for t in failed)
    assert len(sweep.study.trials) == 10, "a failed trial spends its share of the budget"
    assert params["x"] >= 0.5 and score == params["x"]


def test_a_sweep_where_nothing_completes_says_why(tmp_path):
    sweep = Sweep(always_fails, {"x": ("float", 0, 1)}, 3, run_dir=tmp_path)
    with pytest.raises(SweepError, match="3 FAIL.*the objective is broken"):
        sweep.run()


# ---- storages and workers ----------------------------------------------------------------


def test_an_unreachable_storage_fails_before_any_trial(tmp_path):
    url = f"postgresql://optix:secret@127.0.0.1:{free_port()}/optix"
    sweep = Sweep(bowl, BOWL_SPACE, 5, storage=url, run_dir=tmp_path / "sweep")
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        sweep.run()
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "cannot open tune storage postgresql+psycopg://optix:***@127.0.0.1" in message
    assert "secret" not in message
    assert not (tmp_path / "sweep" / "trials").exists(), "no trial started"


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("sqlite:///study.db", "2 workers cannot share an SQLite file"),
        ("not a url://", "is not a database URL"),
        ("no/such/dir/study.journal", "directory no/such/dir does not exist"),
    ],
)
def test_bad_storage_is_refused_when_the_sweep_is_built(storage, says):
    with pytest.raises(StorageError, match=says) as info:
        Sweep(bowl, BOWL_SPACE, 5, storage=storage, n_workers=2)
    if "SQLite" in says:
        assert "postgresql+psycopg://" in str(info.value) and "journal" in str(info.value)


def test_objectives_for_worker_processes_must_pickle(tmp_path):
    sweep = Sweep(lambda c: 0.0, BOWL_SPACE, 4, run_dir=tmp_path, n_workers=2)
    with pytest.raises(TypeError, match="'module:callable' strings, not lambdas"):
        sweep.run()
    assert not (tmp_path / "trials").exists()


def test_two_worker_processes_share_a_journal_file(tmp_path):
    seen = []
    sweep = Sweep(
        slow_bowl, BOWL_SPACE, 8, run_dir=tmp_path, n_workers=2, seed=0, on_trial_end=seen.append
    )
    sweep.run()
    assert (tmp_path / JOURNAL_FILE).is_file(), "several workers: a journal file by default"
    trials = [t for t in sweep.study.trials if not t.user_attrs.get("surplus")]
    assert len(trials) == 8 and all(t.state is TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and f"{socket.gethostname()}:{os.getpid()}" not in workers
    assert sorted(t.number for t in seen) == [t.number for t in trials], "each reported once"


def test_a_killed_worker_fails_its_trial_and_a_new_worker_finishes(tmp_path):
    """The journal file has no heartbeat: the sweep itself notices its worker died."""
    sweep = Sweep(stalls_on_trial_1, {"x": ("float", 0, 1)}, 6, run_dir=tmp_path, n_workers=2)
    assert sweep.study  # created before the workers start, so it can be watched
    watcher = optuna.load_study(study_name=sweep.study_name, storage=sweep.storage.open())
    runner = threading.Thread(target=sweep.run)
    runner.start()
    pid = wait_for_worker_of(watcher, number=1)
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=60)
    assert not runner.is_alive()
    trials = sweep.study.trials
    assert trials[1].state is TrialState.FAIL and "error" not in trials[1].user_attrs
    others = [t for t in trials if t.number != 1 and not t.user_attrs.get("surplus")]
    assert len(others) == 6 and all(t.state is TrialState.COMPLETE for t in others)


def wait_for_worker_of(study: optuna.Study, number: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = study.get_trials(deepcopy=False)
        if len(trials) > number and "worker" in trials[number].user_attrs:
            assert trials[number].state is TrialState.RUNNING
            return int(trials[number].user_attrs["worker"].rsplit(":", 1)[1])
        time.sleep(0.1)
    raise AssertionError(f"trial {number} never started")


# ---- trials train what they sample -------------------------------------------------


class CoinAgent(BaseAgent):
    """Random moves while training, always "left" when deterministic.

    On CartPole its training returns (~22) and its deterministic evaluations
    (~9) lie far apart, so a test can tell which of them a number is. It
    declares a search space, so RLOptimizer's default SPSA would tune it, and
    it records every change of its hyperparameters and every step it learns.
    """

    changes: ClassVar[list[dict]] = []
    learned: ClassVar[list[int]] = []  # env steps learned, one entry per agent
    ctrl_c_after: ClassVar[int | None] = None  # a Ctrl-C arrives after this many steps

    def __init__(self, params: dict, seed: int | None = None) -> None:
        self.params = {"lr": 1e-3, **params}
        self.rng = np.random.default_rng(seed)
        CoinAgent.learned.append(0)

    def act(self, observation, deterministic=False):
        n = len(observation)
        return np.zeros(n, dtype=np.int64) if deterministic else self.rng.integers(0, 2, n)

    def learn(self, episode_data):
        CoinAgent.learned[-1] += int(np.size(episode_data.rewards))
        if CoinAgent.ctrl_c_after is not None and CoinAgent.learned[-1] > CoinAgent.ctrl_c_after:
            raise KeyboardInterrupt
        return {}

    def get_hyperparams(self):
        return HyperparamSet(params=dict(self.params))

    def set_hyperparams(self, hyperparams):
        if dict(hyperparams.params) != self.params:
            CoinAgent.changes.append(dict(hyperparams.params))
        self.params = dict(hyperparams.params)

    def save_weights(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "params.json").write_text(json.dumps(self.params))

    def load_weights(self, path):
        self.params = json.loads((Path(path) / "params.json").read_text())

    @property
    def search_space(self):
        return {"lr": ("log_float", 1e-4, 1e-1)}


@pytest.fixture
def coin_agent():
    CoinAgent.changes.clear()
    CoinAgent.learned.clear()
    yield CoinAgent
    CoinAgent.ctrl_c_after = None


def coin_orchestrator(tmp_path: Path, trial_steps: int = 3000, **options) -> TrialOrchestrator:
    return TrialOrchestrator(
        CoinAgent,
        VectorPipelineFactory("CartPole-v1", n_envs=4, window_size=250),  # 1,000 steps a window
        {"lr": ("log_float", 1e-4, 1e-1)},
        n_trials=2,
        trial_steps=trial_steps,
        eval_episodes=4,
        seed=0,
        run_dir=tmp_path / "sweep",
        storage=journal(tmp_path),
        **options,
    )


def test_a_trial_trains_the_configuration_it_sampled(tmp_path, coin_agent):
    orchestrator = coin_orchestrator(tmp_path)
    orchestrator.run()
    assert coin_agent.changes == [], "no online optimizer runs inside a trial unless asked"
    for trial in orchestrator.study.trials:
        directory = tmp_path / "sweep" / "trials" / f"trial-{trial.number:04d}" / "seed-0"
        (snapshot,) = CheckpointRegistry(directory).snapshots("best")
        assert snapshot.hyperparams.params["lr"] == trial.params["lr"]


def test_a_trial_tunes_online_when_asked(tmp_path, coin_agent):
    orchestrator = coin_orchestrator(
        tmp_path, online_optimizer="optix_core.trials.rl_trial:spsa_over_search_space"
    )
    orchestrator.run()
    assert coin_agent.changes, "SPSA over the agent's search space moved it"


def test_the_pruner_sees_evaluation_scores_not_training_returns(tmp_path, coin_agent):
    orchestrator = coin_orchestrator(tmp_path)
    orchestrator.run()
    for trial in orchestrator.study.trials:
        values = list(trial.intermediate_values.values())
        assert len(values) == 3, "one value per evaluated window"
        # Always pushing left ends CartPole in ~9 steps; random moves last ~22.
        assert max(values) < 15, values
        assert trial.value < 15


def test_a_trial_stops_at_the_first_window_past_its_budget(tmp_path, coin_agent):
    # Evaluations every second window: stopping at an evaluation would train 4,000 steps.
    orchestrator = coin_orchestrator(tmp_path, trial_steps=2500, loop_kwargs={"base_interval": 2})
    orchestrator.run()
    assert coin_agent.learned == [3000, 3000]
    assert [t.user_attrs["train_env_steps"] for t in orchestrator.study.trials] == [3000, 3000]


def test_ctrl_c_inside_a_trial_fails_it_instead_of_scoring_half_a_run(tmp_path, coin_agent):
    """RLOptimizer ends a run normally on KeyboardInterrupt; a trial must not take
    that half-trained policy for its result."""
    coin_agent.ctrl_c_after = 1000
    orchestrator = coin_orchestrator(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        orchestrator.run()
    (trial,) = orchestrator.study.trials
    assert trial.state is TrialState.FAIL and "error" not in trial.user_attrs


@pytest.mark.parametrize("key", ["optimizer", "max_env_steps"])
def test_loop_kwargs_cannot_take_over_what_a_trial_owns(tmp_path, key):
    with pytest.raises(ValueError, match=f"loop_kwargs may not set {key}"):
        coin_orchestrator(tmp_path, loop_kwargs={key: None})


# ---- sweeps a user can rely on -------------------------------------------------------


def test_a_study_keeps_its_seed_and_settings(tmp_path):
    def sweep(n_trials=3, **options):
        options = {"seed": 5, "pruner_warmup_steps": 100, **options}
        storage = journal(tmp_path)
        return Sweep(bowl, BOWL_SPACE, n_trials, run_dir=tmp_path, storage=storage, **options)

    first = sweep(settings={"env": "CartPole-v1"})
    first.run()
    assert first.study.user_attrs[SEED_ATTR] == 5
    with pytest.raises(SweepSettingsError, match=r"pruner: .*100.* then, .*200.* now"):
        assert sweep(pruner_warmup_steps=200, settings={"env": "CartPole-v1"}).study
    with pytest.raises(SweepSettingsError, match='env: "CartPole-v1" then, "Acrobot-v1"'):
        assert sweep(settings={"env": "Acrobot-v1"}).study
    with pytest.raises(SweepSettingsError, match="created with seed 5, not 6"):
        assert sweep(seed=6, settings={"env": "CartPole-v1"}).study
    again = sweep(seed=None, settings={"env": "CartPole-v1"}, n_trials=5)
    assert again.study and again.seed == 5, "no seed given: the stored one"
    again.run()
    assert len(again.study.trials) == 5
    # The continued sampler draws afresh: it does not replay the first session's draws.
    params = [tuple(sorted(t.params.items())) for t in again.study.trials]
    assert len(set(params)) == 5


def test_a_continued_orchestrator_runs_its_stored_seeds(tmp_path):
    first = cem_orchestrator(tmp_path, n_trials=1, seeds_per_trial=2, storage=journal(tmp_path))
    assert first.study.user_attrs[SEED_ATTR] == 0
    again = TrialOrchestrator(
        RegisteredAgentFactory("cem", "CartPole-v1"),
        VectorPipelineFactory("CartPole-v1", n_envs=8, window_size=250),
        SEARCH_SPACE,
        n_trials=1,
        trial_steps=4000,
        eval_episodes=4,
        seeds_per_trial=2,
        run_dir=tmp_path / "sweep",
        storage=journal(tmp_path),
    )
    assert again.study and again.seed == 0 and again.objective.seeds == (0, 1)


def test_the_baseline_is_the_first_trial(tmp_path):
    baseline = {"x": 0.25, "y": 9.0, "lr": 1e-3, "n": 37, "act": "relu"}  # y is out of range
    sweep = Sweep(
        bowl, BOWL_SPACE, 3, run_dir=tmp_path, storage=journal(tmp_path), baseline=baseline
    )
    sweep.run()
    first = sweep.study.trials[0]
    assert first.user_attrs["baseline"] is True
    assert {k: first.params[k] for k in ("x", "lr", "n", "act")} == {
        "x": 0.25,
        "lr": 1e-3,
        "n": 37,
        "act": "relu",
    }
    assert -2.0 <= first.params["y"] <= 2.0, "a default outside its range is sampled instead"
    assert not any(t.user_attrs.get("baseline") for t in sweep.study.trials[1:])
    with pytest.raises(ValueError, match="baseline sets z, which the search space lacks"):
        Sweep(bowl, BOWL_SPACE, 3, run_dir=tmp_path, baseline={"z": 1})


def test_tpe_runs_with_constant_liar_when_workers_share_the_study(tmp_path):
    one = Sweep(bowl, BOWL_SPACE, 3, run_dir=tmp_path / "a")
    two = Sweep(bowl, BOWL_SPACE, 3, run_dir=tmp_path / "b", n_workers=2)
    assert not one.sampler.constant_liar and two.sampler.constant_liar
    assert two.sampler.build(0)._constant_liar is True


def test_no_trial_starts_after_the_timeout(tmp_path):
    sweep = Sweep(
        slow_bowl, BOWL_SPACE, 100, run_dir=tmp_path, storage=journal(tmp_path), timeout=1
    )
    started = time.monotonic()
    sweep.run()
    assert time.monotonic() - started < 3
    assert 1 <= len(sweep.study.trials) <= 5


def test_a_running_trial_prints_progress_lines(tmp_path, capsys):
    sweep = Sweep(
        learning_curve,
        {"x": ("float", 0.0, 1.0)},
        2,
        run_dir=tmp_path,
        storage=journal(tmp_path),
        progress_interval=0,
    )
    sweep.run()
    lines = [line for line in capsys.readouterr().out.splitlines() if "running" in line]
    assert len(lines) == 20, "every report, at interval 0"
    assert lines[0].startswith("trial   0  running   score ")
    assert lines[0].endswith("at 1,000 env steps")


# ---- stopping a sweep ----------------------------------------------------------------


def test_a_stopped_trial_fails_and_never_counts_against_the_budget(tmp_path):
    def sweep():
        return Sweep(
            stopped_on_trial_1,
            BOWL_SPACE,
            4,
            run_dir=tmp_path,
            storage=journal(tmp_path),
            seed=0,
        )

    with pytest.raises(Interrupted) as info:
        sweep().run()
    assert info.value.failed == [1]
    trials = sweep().study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs["stopped"] == "stopped by SIGTERM"
    resumed = sweep()
    resumed.run()
    states = [t.state for t in resumed.study.trials]
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1


def test_a_running_trial_of_a_dead_process_is_failed_not_counted(tmp_path):
    sweep = Sweep(bowl, BOWL_SPACE, 3, run_dir=tmp_path, storage=journal(tmp_path), seed=0)
    orphan = sweep.study.ask()  # as a sweep killed with kill -9 leaves it
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{_pid_of_a_dead_process()}")
    sweep.run()
    trials = sweep.study.trials
    assert trials[0].state is TrialState.FAIL
    assert trials[0].user_attrs["stopped"] == "its worker process is gone"
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 3


def _pid_of_a_dead_process() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_trial_started_past_the_budget_is_failed_before_it_runs(tmp_path):
    """Two workers that both saw one place left: the later trial stands down."""
    from optix_core.trials.worker import _OptunaObjective, _SurplusTrial

    sweep = Sweep(bowl, BOWL_SPACE, 1, run_dir=tmp_path, storage=journal(tmp_path), seed=0)
    first, second = sweep.study.ask(), sweep.study.ask()  # both started side by side
    job_objective = _OptunaObjective(_job(sweep))
    with pytest.raises(_SurplusTrial):
        job_objective(second)
    assert second.user_attrs == {"worker": second.user_attrs["worker"], "surplus": True}
    assert second.params == {}, "nothing sampled"
    assert job_objective(first) <= 0.0


def _job(sweep: Sweep):
    from optix_core.trials.sweep import TRIALS_DIR
    from optix_core.trials.worker import WorkerJob

    return WorkerJob(
        objective=sweep.objective,
        space=sweep.space,
        n_trials=sweep.n_trials,
        storage=sweep.storage,
        study_name=sweep.study_name,
        trials_dir=sweep.run_dir / TRIALS_DIR,
        sampler=sweep.sampler,
        pruner=sweep.pruner,
        optuna_verbosity=optuna.logging.get_verbosity(),
    )


# ---- workers that do not fight over cores -----------------------------------------


def test_each_worker_gets_its_share_of_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    sweep = Sweep(report_threads, {"x": ("float", 0, 1)}, 2, run_dir=tmp_path, n_workers=2)
    sweep.run()
    share = max(1, available_cores() // 2)
    for trial in sweep.study.trials:
        assert trial.user_attrs["omp"] == str(share)
        assert trial.user_attrs["torch"] in (share, None)  # None: torch is not installed
    assert "OMP_NUM_THREADS" not in os.environ, "the caller's environment is left alone"
