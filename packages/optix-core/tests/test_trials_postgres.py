"""Sweeps on a real PostgreSQL server, started here: workers, a killed worker, a lost machine.

The server runs from the PostgreSQL binaries (Debian: /usr/lib/postgresql/N/bin,
package ``postgresql``) on a free loopback port, in a temporary directory, as
the ``postgres`` user when the tests run as root (PostgreSQL refuses root).
If it cannot start, the tests fail: they are never skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optix_core.algorithms.cem_config import SEARCH_SPACE
from optix_core.trials import StorageError, Sweep, TrialOrchestrator
from optix_core.trials.factories import RegisteredAgentFactory, VectorPipelineFactory

SPACE = {"x": ("float", 0.0, 1.0)}
HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 3}


def quick(context):
    time.sleep(0.2)
    return context.params["x"]


def stalls_on_trial_1(context):
    """Trial 1 waits to be killed; every other trial takes a moment."""
    time.sleep(60 if context.number == 1 else 0.2)
    return context.params["x"]


def stalls(context):
    time.sleep(60)
    return context.params["x"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for this module; yields its URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL is not installed (apt-get install -y postgresql): no initdb")
    bin_dir = Path(initdb).parent
    root = Path(tempfile.mkdtemp(prefix="optix-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = free_port()

    def run(*command: str) -> None:
        result = subprocess.run(
            [*as_user, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{server_log}"
            )

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "optix", "--auth=trust", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
    try:
        yield f"postgresql+psycopg://optix@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def load(url: str, study_name: str) -> optuna.Study:
    """The study through a connection of its own, as another machine would see it."""
    return optuna.load_study(study_name=study_name, storage=url)


def test_two_worker_processes_record_every_trial(postgres, tmp_path):
    orchestrator = TrialOrchestrator(
        RegisteredAgentFactory("cem", "CartPole-v1"),
        VectorPipelineFactory("CartPole-v1", n_envs=8, window_size=250),
        SEARCH_SPACE,
        n_trials=8,
        trial_steps=4000,
        eval_episodes=4,
        seed=0,
        storage=postgres,
        study_name="two-workers",
        run_dir=tmp_path,
        n_workers=2,
    )
    best_params, best_score = orchestrator.run()
    trials = [t for t in load(postgres, "two-workers").trials if not t.user_attrs.get("surplus")]
    assert len(trials) == 8, "the budget exactly (a racing worker's surplus trial stands down)"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both workers ran trials"
    for trial in trials:
        assert trial.params.keys() == SEARCH_SPACE.keys()
        assert trial.user_attrs["env_steps"] > 0
        assert (tmp_path / "trials" / f"trial-{trial.number:04d}" / "seed-0").is_dir()
    completed = [t for t in trials if t.state is TrialState.COMPLETE]
    assert best_score == max(t.value for t in completed)
    assert orchestrator.env_steps == sum(t.user_attrs["env_steps"] for t in trials)
    assert best_params == orchestrator.study.best_trial.params


def test_a_killed_worker_leaves_its_trial_failed_and_the_sweep_finishes(postgres, tmp_path):
    sweep = Sweep(
        stalls_on_trial_1,
        SPACE,
        6,
        storage=postgres,
        study_name="killed-worker",
        run_dir=tmp_path,
        n_workers=2,
        **HEARTBEAT,
    )
    runner = threading.Thread(target=sweep.run)
    runner.start()
    pid = wait_for_worker_of(postgres, "killed-worker", number=1)
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)
    assert not runner.is_alive()
    trials = load(postgres, "killed-worker").trials
    assert trials[1].state is TrialState.FAIL, "FAIL, not RUNNING"
    others = [t for t in trials if t.number != 1 and not t.user_attrs.get("surplus")]
    assert len(others) == 6 and all(t.state is TrialState.COMPLETE for t in others)


def test_a_vanished_machine_trial_is_failed_by_its_heartbeat(postgres, tmp_path):
    """Another machine's worker dies with its trial; nobody but the heartbeat can tell."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import socket; socket.gethostname = lambda: 'another-machine'\n"
        "from test_trials_postgres import HEARTBEAT, SPACE, stalls\n"
        "from optix_core.trials import Sweep\n"
        f"Sweep(stalls, SPACE, 4, storage={postgres!r}, study_name='vanished', "
        f"run_dir={str(tmp_path / 'other')!r}, **HEARTBEAT).run()\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        pid = wait_for_worker_of(postgres, "vanished", number=0, process=other)
        assert pid == other.pid
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
    sweep = Sweep(
        quick,
        SPACE,
        4,
        storage=postgres,
        study_name="vanished",
        run_dir=tmp_path / "here",
        n_workers=2,
        **HEARTBEAT,
    )
    sweep.run()
    trials = load(postgres, "vanished").trials
    assert trials[0].state is TrialState.FAIL and "error" not in trials[0].user_attrs
    assert trials[0].user_attrs["worker"].startswith("another-machine:")
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(done) == 4, "the lost trial's share of the budget was run again"
    assert not [t for t in trials if t.state is TrialState.RUNNING]


def test_a_database_that_does_not_exist_is_refused_before_any_trial(postgres, tmp_path):
    url = postgres.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StorageError, match='database "no_such_database" does not exist'):
        Sweep(quick, SPACE, 2, storage=url, run_dir=tmp_path).run()
    assert not (tmp_path / "trials").exists()


def wait_for_worker_of(
    url: str, study_name: str, number: int, process: subprocess.Popen | None = None
) -> int:
    """The pid of the worker running trial ``number``, once it runs."""
    deadline = time.monotonic() + 120
    study = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the other worker exited early ({process.returncode})")
        try:
            study = study or load(url, study_name)
        except KeyError:  # not created yet
            time.sleep(0.1)
            continue
        trials = study.get_trials(deepcopy=False)
        if len(trials) > number and "worker" in trials[number].user_attrs:
            assert trials[number].state is TrialState.RUNNING
            return int(trials[number].user_attrs["worker"].rsplit(":", 1)[1])
        time.sleep(0.1)
    raise AssertionError(f"trial {number} never started")
