"""Sweep and TrialOrchestrator: TPE, pruning in env steps, isolated trials, storages, workers.

Objectives that worker processes run are module-level, so they pickle.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import statistics
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optix_core.algorithms.cem_config import SEARCH_SPACE
from optix_core.checkpoints import CheckpointRegistry
from optix_core.trials import StorageError, Sweep, SweepError, TrialOrchestrator
from optix_core.trials.factories import RegisteredAgentFactory, VectorPipelineFactory
from optix_core.trials.storage import JOURNAL_FILE, SQLITE_FILE

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
    trials = sweep.study.trials
    assert 8 <= len(trials) <= 9 and all(t.state is TrialState.COMPLETE for t in trials)
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
    others = [t for t in trials if t.number != 1]
    assert len(others) >= 6 and all(t.state is TrialState.COMPLETE for t in others)


def wait_for_worker_of(study: optuna.Study, number: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = study.get_trials(deepcopy=False)
        if len(trials) > number and "worker" in trials[number].user_attrs:
            assert trials[number].state is TrialState.RUNNING
            return int(trials[number].user_attrs["worker"].rsplit(":", 1)[1])
        time.sleep(0.1)
    raise AssertionError(f"trial {number} never started")
