"""The Ray executor on a real Ray cluster started for these tests on loopback and
joined by address, as a learner joins a multi-node cluster: IMPALA learns through
it, a killed actor is replaced, weights reach actors through the object store, and
an environment's exception stops the learner instead of restarting actors forever."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import helpers
import numpy as np
import pytest
import torch
from helpers import BrokenCartPole, wait_gone

from optix_core.evaluation import evaluate_policy
from optix_core.loop import RLOptimizer
from optix_core.optimizers import SPSAOptimizer
from optix_core.policies import observations as O
from optix_core.registry import env_spaces, make_env
from optix_core.selection import EvaluationSelection
from optix_distributed.actor import ActorFailed, ActorSpec, Trajectory
from optix_distributed.impala import ImpalaAgent, make_impala
from optix_distributed.pipeline import ActorLearnerPipeline
from optix_distributed.weights import flatten

ray = pytest.importorskip("ray")
from optix_distributed.executors.ray import RayExecutor, _running_cluster  # noqa: E402

# Ray's workers cannot import the tests' modules (their folder is on pytest's path, not
# theirs): what the tests hand to actors travels by value instead.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
ray.cloudpickle.register_pickle_by_value(helpers)

CLUSTER_START_S = 120.0  # `ray start` takes 10-35 s on two busy cores
START_ATTEMPTS = 3  # Ray gives the raylet 30 s to register: a busy machine can miss that


def impala(seed: int = 0) -> ImpalaAgent:
    obs, act = env_spaces("CartPole-v1")
    return make_impala(obs, act, seed=seed, device="cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A one-node Ray cluster (2 CPUs) on loopback; yields its GCS address.

    Started with ``--block`` and stopped by signalling that one process, which takes
    its cluster down with it: ``ray stop`` would stop every Ray on the machine. Every
    port with a fixed default is chosen free, and the temp dir is private, so another
    Ray on the machine neither collides with this one nor is found by it."""
    temp_dir = tempfile.mkdtemp(prefix="optix-ray-", dir="/tmp")  # short: Ray's socket paths
    head = None
    try:
        for attempt in range(START_ATTEMPTS):
            started = time.monotonic()
            head, port, log = _start_head(Path(temp_dir) / f"attempt-{attempt}")
            up = head.returncode is None
            print(
                f"ray start --head: {'up' if up else 'failed'} in {time.monotonic() - started:.1f} s"
            )
            if up:
                break
            _stop(head)
        else:
            pytest.fail(f"`ray start --head` did not start:\n{log[-3000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if head is not None:
            _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _start_head(temp_dir: Path) -> tuple[subprocess.Popen, int, str]:
    """``ray start --head --block``, its port and its output once it is up, or once it
    has exited (then ``returncode`` is set)."""
    temp_dir.mkdir()
    ray_cli = Path(sys.executable).with_name("ray")
    command = [str(ray_cli)] if ray_cli.exists() else [sys.executable, "-m", "ray.scripts.scripts"]
    port = free_port()
    command += [
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    # Without a token: `ray start` would require one if ~/.ray holds one, and a learner
    # joining by address sends one only when told to (RAY_AUTH_MODE=token, read by
    # Ray once, when it is imported).
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    log_path = temp_dir / "ray-start.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + CLUSTER_START_S
    while "block forever" not in log_path.read_text():
        if head.poll() is not None:
            break
        if time.monotonic() > deadline:
            _stop(head)
            break
        time.sleep(0.2)
    return head, port, log_path.read_text()


def _stop(head: subprocess.Popen) -> None:
    """Stop ``ray start --block`` and with it every process of its session."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
    left = wait_gone(_session(head.pid), timeout=10.0)
    for pid in left:  # started by this fixture: its session
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"Ray processes outlived `ray start --block`: {left}"


def _session(sid: int) -> list[int]:
    """The processes of session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().split(")")[-1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == sid:  # state, ppid, pgrp, session
                found.append(int(entry))
    return found


# ---- what needs no cluster ------------------------------------------------------


def test_addresses_are_checked_before_anything_starts():
    with pytest.raises(ValueError, match="host:port"):
        RayExecutor(2, "localhost")
    with pytest.raises(ValueError, match="n_actors"):
        RayExecutor(0)
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process: no address is consulted")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="no Ray cluster answers at '127.0.0.1:"):
        RayExecutor(1, f"127.0.0.1:{free_port()}").start(None, np.zeros(1, np.float32))
    assert time.monotonic() - started < 15  # Ray alone keeps retrying for minutes
    assert not ray.is_initialized()


def test_without_ray_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    monkeypatch.delitem(sys.modules, "optix_distributed.executors.ray")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'optix-distributed\[ray\]'"):
        import optix_distributed.executors.ray  # noqa: F401


# ---- on the cluster -------------------------------------------------------------


def test_auto_joins_the_cluster_ray_address_names_if_it_answers(cluster, monkeypatch):
    port = cluster.rsplit(":", 1)[1]
    monkeypatch.setenv("RAY_ADDRESS", cluster)
    assert _running_cluster().endswith(f":{port}")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")  # a stale address
    assert _running_cluster() is None  # then "auto" starts a local instance


@pytest.mark.slow
def test_impala_learns_cartpole_through_ray_actors(cluster, tmp_path):
    """2 Ray actors, RLOptimizer until DORMANT (or 400k steps): the chosen policy scores
    >= 475 on fresh deterministic episodes; every batch's policy lag stays small."""
    agent = impala()
    pipeline = ActorLearnerPipeline(
        "CartPole-v1",
        n_envs=8,
        window_size=32,
        seed=0,
        n_actors=2,
        rounds=1,
        executor="ray",
        address=cluster,
    )
    lags: list[np.ndarray] = []
    original_collect = pipeline.collect

    def collect():
        window = original_collect()
        lags.append(np.asarray(window.infos["policy_lag"]))
        return window

    pipeline.collect = collect
    loop = RLOptimizer(
        agent,
        pipeline,
        # No online tuning (the default tunes, unseeded): with every version a trajectory
        # is acted with fixed (see the lags below), the run is the same every time.
        optimizer=SPSAOptimizer.from_search_space({}, seed=0),
        checkpoint_dir=tmp_path,
        selection=EvaluationSelection("CartPole-v1", 20),
        max_env_steps=400_000,
        base_interval=1,
        max_interval_episodes=8,
        dormant_threshold=10,
        plateau_threshold=5,
        score_smoothing=2,
    )
    try:
        report = loop.run()
        pids = pipeline.executor.pids()
    finally:
        pipeline.close()
    print(report.format())
    assert pipeline.executor.name == "ray" and pipeline.executor.replaced == 0
    evaluation = evaluate_policy(agent, "CartPole-v1", episodes=20, seed=123)
    print(evaluation)
    assert evaluation.mean >= 475, str(evaluation)
    # An actor is one version behind at most: it collects its next trajectory while the
    # learner learns from its last.
    assert all(lag.size == 2 and lag.min() >= 0 and lag.max() <= 1 for lag in lags), lags[-3:]
    assert wait_gone(pids) == []


def test_a_killed_ray_actor_is_replaced_and_windows_keep_coming(cluster):
    """SIGKILL one actor's process: its next incarnation takes over, counted once,
    full windows keep coming, and closing leaves no actor process behind."""
    agent = impala()
    pipeline = ActorLearnerPipeline(
        "CartPole-v1", n_envs=4, window_size=16, seed=0, n_actors=2, executor="ray", address=cluster
    )
    pipeline.bind(agent)
    executor = pipeline.executor
    replaced_seen: list[int] = []
    incarnations: dict[int, list[int]] = {0: [], 1: []}
    original_collect = executor.collect

    def collect(actor_id: int) -> Trajectory:
        trajectory = original_collect(actor_id)
        incarnations[actor_id].append(trajectory.incarnation)
        return trajectory

    executor.collect = collect
    try:
        for _ in range(3):
            replaced_seen.append(pipeline.collect().infos["actors_replaced"])
        before = executor.pids()
        os.kill(before[0], signal.SIGKILL)
        for _ in range(8):
            window = pipeline.collect()
            assert window.n_steps == 2 * 4 * 16  # a trajectory lost with its actor never counts
            replaced_seen.append(window.infos["actors_replaced"])
            assert np.asarray(window.infos["policy_lag"]).max() <= 1
        after = executor.pids()
    finally:
        pipeline.close()
    assert executor.replaced == 1 and replaced_seen[-1] == 1
    assert replaced_seen == sorted(replaced_seen) and replaced_seen[0] == 0
    assert pipeline.env_steps == 11 * 2 * 4 * 16
    assert after[0] != before[0] and after[1] == before[1]
    assert incarnations[0][0] == 0 and incarnations[0][-1] == 1 and set(incarnations[1]) == {0}
    assert wait_gone(before + after, timeout=5.0) == []
    pipeline.close()  # twice: nothing left to do


def test_published_weights_reach_the_actors_through_the_object_store(cluster):
    """After ``publish`` the next trajectory is acted with the new version: its
    behaviour log-probabilities are the published network's."""
    agent = impala()
    spec = ActorSpec.of(
        agent.actor, agent.distribution, agent.shared, partial(make_env, "CartPole-v1"), 4, 16, 0
    )
    executor = RayExecutor(1, cluster)
    executor.start(spec, flatten(agent.actor))
    changed = copy.deepcopy(spec.policy)
    with torch.no_grad():
        noise = torch.Generator().manual_seed(0)
        for p in changed.parameters():
            p.add_(torch.randn(p.shape, generator=noise))
    try:
        first = executor.collect(0)
        assert (first.version, first.incarnation) == (1, 0)
        assert executor.publish(flatten(changed)) == 2
        # The trajectory in flight was asked for before the publish.
        later = [executor.collect(0) for _ in range(2)]
        assert [t.version for t in later] == [1, 2]
        assert executor.publish(flatten(changed)) == 3
    finally:
        executor.close()
    executor.close()  # twice: nothing left to do
    np.testing.assert_allclose(behaviour(later[1]), log_probs(changed, agent, later[1]), atol=1e-5)
    np.testing.assert_allclose(behaviour(first), log_probs(spec.policy, agent, first), atol=1e-5)
    assert not np.allclose(behaviour(first), log_probs(changed, agent, first), atol=1e-3)


def behaviour(t: Trajectory) -> np.ndarray:
    return np.asarray(t.data.policy_info["log_probs"], dtype=np.float32).reshape(-1)


@torch.no_grad()
def log_probs(network: torch.nn.Module, agent: ImpalaAgent, t: Trajectory) -> np.ndarray:
    """log π(a|s) of ``t``'s actions under ``network``, computed here."""
    n = t.data.n_steps
    obs = torch.as_tensor(np.array(O.flatten_steps(t.data.observations, n), np.float32))
    out = network(obs)
    params = out[0] if agent.shared else out
    actions = agent.distribution.learn_actions(t.data.actions, t.data.policy_info, n)
    return agent.distribution.log_prob(params, torch.as_tensor(actions)).numpy()


def test_an_environment_that_raises_stops_the_learner_with_its_message(cluster):
    pipeline = ActorLearnerPipeline(
        env_factory=BrokenCartPole,
        n_envs=2,
        window_size=16,
        seed=0,
        n_actors=1,
        executor="ray",
        address=cluster,
    )
    pipeline.bind(impala())
    try:
        pipeline.collect()  # the actor is up: what follows is the failure alone
        started = time.monotonic()
        with pytest.raises(ActorFailed, match="actor 0 failed: RuntimeError: the simulator lost"):
            for _ in range(5):
                pipeline.collect()
        assert time.monotonic() - started < 10
        assert pipeline.executor.replaced == 0
        pids = pipeline.executor.pids()
    finally:
        pipeline.close()
    assert wait_gone(pids, timeout=5.0) == []
