"""IMPALA: the learner's V-trace step, the agent contract, and the actors under the loop."""

from __future__ import annotations

import os
import signal
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import BrokenCartPole, OnlyInTheLearner, wait_gone
from torch import nn

from optix_core.evaluation import evaluate_policy
from optix_core.loop import RLOptimizer
from optix_core.optimizers import SPSAOptimizer
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import env_spaces, make_env
from optix_core.selection import EvaluationSelection
from optix_core.testing import AgentConformance
from optix_core.types import HyperparamSet
from optix_distributed import ActorFailed, AsyncActorLearner
from optix_distributed.impala import ImpalaAgent, make_impala
from optix_distributed.pipeline import ActorLearnerPipeline


class TestImpalaConformance(AgentConformance):
    algo = "impala"
    backend = "torch"


def impala(env_id: str = "CartPole-v1", seed: int = 0, **hp) -> ImpalaAgent:
    obs, act = env_spaces(env_id)
    return make_impala(obs, act, seed=seed, device="cpu", hyperparams=HyperparamSet(hp))


# ---- the learner's step --------------------------------------------------------


def vtrace_by_definition(mu, pi, r, v, done, boot, gamma, rho_bar, c_bar):
    """Espeholt et al. eq. 1 summed term by term over one column; ``boot[t]`` is
    V(x_{t+1}) (the next state's, or the bootstrap after an episode's end)."""
    ratio = np.exp(pi - mu)
    rho, c = np.minimum(rho_bar, ratio), np.minimum(c_bar, ratio)
    delta = rho * (r + gamma * boot - v)
    vs = v.astype(float).copy()
    for s in range(len(r)):
        acc, trace, t = 0.0, 1.0, s
        while True:
            acc += gamma ** (t - s) * trace * delta[t]
            if done[t] or t == len(r) - 1:
                break
            trace *= c[t]
            t += 1
        vs[s] += acc
    next_vs = np.where(done, boot, np.append(vs[1:], boot[-1]))
    return vs, rho * (r + gamma * next_vs - v)


def test_the_policy_loss_weights_log_pi_by_vtrace_advantages_of_the_current_critic():
    """Behaviour log-probabilities from the window, π and V from the learner's current
    networks: the reported policy loss is −mean(log π · ρ_s (r + γ v_{s+1} − V))."""
    agent = impala(rho_bar=0.9, c_bar=0.7, gamma=0.95)
    pipeline = VectorBatchPipeline(env_id="CartPole-v1", n_envs=1, window_size=60, seed=3)
    pipeline.bind(agent)
    window = pipeline.collect()
    # As if an older policy μ had acted: its log-probabilities differ from π's.
    mu = window.policy_info["log_probs"].reshape(-1) + np.random.default_rng(0).normal(0, 0.3, 60)
    window.policy_info["log_probs"] = mu.reshape(60, 1).astype(np.float32)

    obs = torch.as_tensor(window.observations.reshape(60, 4))
    with torch.no_grad():
        params, values = agent.forward(obs)
        pi = agent.distribution.log_prob(params, torch.as_tensor(window.actions.reshape(60, 1)))
        last = agent.forward(torch.as_tensor(window.next_observations))[1]
    done = (window.terminated | window.truncated).reshape(60)
    values, pi = values.numpy(), pi.numpy()
    boot = np.append(values[1:], last.numpy())
    boot[done] = 0.0  # CartPole's episodes end by termination here (60 steps < 500)
    assert not window.truncated.any()
    _, adv = vtrace_by_definition(
        mu, pi, window.rewards.reshape(60), values, done, boot, 0.95, 0.9, 0.7
    )

    out = agent.learn(window)
    assert out["policy_loss"] == pytest.approx(-np.mean(pi * adv), rel=1e-4, abs=1e-5)
    assert out["mean_ratio"] == pytest.approx(np.mean(np.exp(pi - mu)), rel=1e-4)


def test_a_window_without_behaviour_log_probs_is_refused():
    agent = impala()
    pipeline = VectorBatchPipeline(env_id="CartPole-v1", n_envs=1, window_size=8, seed=0)
    pipeline.bind(agent, acting_only=True)  # records no policy_info
    with pytest.raises(ValueError, match="behaviour log-probabilities"):
        agent.learn(pipeline.collect())


def test_an_actor_without_a_critic_or_values_is_refused():
    with pytest.raises(ValueError, match="V-trace needs values"):
        ImpalaAgent(
            nn.Linear(4, 2),
            action_space=gym.spaces.Discrete(2),
            observation_space=gym.spaces.Box(-1, 1, (4,)),
        )


# ---- the actors ----------------------------------------------------------------


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_each_start_method_acts_with_the_newest_weights_and_stops_cleanly(start_method):
    agent = impala()
    pipeline = ActorLearnerPipeline(
        "CartPole-v1", n_envs=2, window_size=8, seed=0, n_actors=2, start_method=start_method
    )
    pipeline.bind(agent)
    try:
        lags = []
        for _ in range(12):
            window = pipeline.collect()
            agent.learn(window)
            lags.append(window.infos["policy_lag"])
        pids = pipeline.executor.pids()
        assert pipeline.executor.start_method == start_method
        assert pipeline.executor.weights.version == 12
    finally:
        pipeline.close()
    # Each actor picks up the newest weights at every trajectory: at most its credits behind.
    assert max(int(lag.max()) for lag in lags[2:]) <= 2
    assert wait_gone(pids) == []


def test_actors_learn_cartpole_under_the_loop_and_leave_nothing_behind(tmp_path):
    """2 local actors, RLOptimizer until DORMANT, one actor killed with SIGKILL at the
    10th window: it is replaced, the report says so, the best policy scores >= 475 on
    fresh deterministic episodes, every counted step was learned from, and no actor
    remains."""
    agent = impala()
    pipeline = ActorLearnerPipeline(
        "CartPole-v1",
        n_envs=4,
        window_size=16,
        seed=0,
        n_actors=2,
        rounds=8,
    )
    loop = RLOptimizer(
        agent,
        pipeline,
        checkpoint_dir=tmp_path,
        selection=EvaluationSelection("CartPole-v1", 10),
        max_env_steps=300_000,
        base_interval=1,
        max_interval_episodes=8,
        dormant_threshold=10,
        plateau_threshold=5,
        score_smoothing=2,
        optimizer=SPSAOptimizer.from_search_space({}, seed=0),  # as optix train, without --tune
    )
    learned = []
    original = agent.learn
    agent.learn = lambda window: learned.append(window.n_steps) or original(window)
    pids: list[int] = []
    original_collect = pipeline.collect

    def collect():
        window = original_collect()
        if window.episode_id == 10:
            os.kill(pipeline.executor.pids()[0], signal.SIGKILL)
        pids[:] = pipeline.executor.pids()
        return window

    pipeline.collect = collect
    try:
        report = loop.run()
    finally:
        pipeline.close()
    print(report.format())
    assert "DORMANT" in report.stop_reason or "converged" in report.stop_reason
    assert sum(learned) == pipeline.env_steps == report.env_steps
    assert report.pipeline["actors_replaced"] == 1
    assert "Actors replaced  : 1" in report.format()
    assert evaluate_policy(agent, "CartPole-v1", episodes=20, seed=123).mean >= 475
    assert pids and wait_gone(pids) == []


def test_a_killed_actor_is_replaced_and_the_run_goes_on():
    agent = impala()
    pipeline = ActorLearnerPipeline("CartPole-v1", n_envs=4, window_size=16, seed=0, n_actors=2)
    pipeline.bind(agent)
    try:
        for _ in range(5):
            agent.learn(pipeline.collect())
        victim = pipeline.executor.pids()[0]
        os.kill(victim, signal.SIGKILL)
        windows = [pipeline.collect() for _ in range(20)]
        for window in windows:
            agent.learn(window)
        assert windows[-1].infos["actors_replaced"] == 1
        assert victim not in pipeline.executor.pids()
        replaced = [w.infos["actors_replaced"] for w in windows]
        assert replaced == sorted(replaced)
        assert all(w.rewards.shape == (16, 8) for w in windows)
        assert max(int(w.infos["policy_lag"].max()) for w in windows) <= 3
        pids = pipeline.executor.pids()
    finally:
        pipeline.close()
    assert wait_gone(pids) == []


def test_an_actor_whose_environment_raises_stops_the_learner_with_its_error():
    agent = impala()
    pipeline = ActorLearnerPipeline(
        env_factory=BrokenCartPole, n_envs=1, window_size=16, n_actors=1
    )
    pipeline.bind(agent)
    try:
        with pytest.raises(ActorFailed, match="the simulator lost its state"):
            for _ in range(10):
                pipeline.collect()
    finally:
        pipeline.close()
    assert pipeline.executor.replaced == 0


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (OnlyInTheLearner(raise_in_actors=True), "cannot be built in an actor"),
        (OnlyInTheLearner(raise_in_actors=False), "died 3 times in a row"),
    ],
)
def test_actors_that_cannot_start_stop_the_learner_instead_of_restarting_forever(factory, message):
    """An environment that raises while an actor builds it, or an actor process that
    dies before its first trajectory (three times in a row)."""
    pipeline = ActorLearnerPipeline(env_factory=factory, n_envs=1, window_size=8, n_actors=1)
    pipeline.bind(impala())
    try:
        with pytest.raises(ActorFailed, match=message):
            pipeline.collect()
    finally:
        pipeline.close()


def test_actors_build_their_environments_with_env_kwargs():
    """CartPole limited to 5 steps: every episode the actors play lasts 5 steps or fewer."""
    pipeline = ActorLearnerPipeline(
        "CartPole-v1", n_envs=2, window_size=16, seed=0, n_actors=1,
        env_kwargs={"max_episode_steps": 5},
    )  # fmt: skip
    pipeline.bind(impala())
    try:
        lengths = pipeline.collect().infos["episode_lengths"]
    finally:
        pipeline.close()
    assert lengths.size >= 6 and lengths.max() <= 5  # 32 steps; CartPole's first last 9 or more


def test_bad_pipeline_arguments_are_refused_before_any_actor_starts():
    with pytest.raises(ValueError, match="n_actors must be >= 1"):
        ActorLearnerPipeline("CartPole-v1", n_actors=0)
    with pytest.raises(ValueError, match="executor must be one of"):
        ActorLearnerPipeline("CartPole-v1", executor="slurm")
    with pytest.raises(ValueError, match="names a Ray cluster"):
        ActorLearnerPipeline("CartPole-v1", address="127.0.0.1:6379")
    with pytest.raises(ValueError, match="start method 'vfork' is not available"):
        ActorLearnerPipeline("CartPole-v1", start_method="vfork")
    with pytest.raises(LookupError, match="unknown environment"):
        ActorLearnerPipeline("CartPol-v9")
    with pytest.raises(ValueError, match="env_kwargs= are for environments built from env_id="):
        ActorLearnerPipeline(env_factory=BrokenCartPole, env_kwargs={"max_episode_steps": 5})


# ---- tensor-optix's AsyncActorLearner -----------------------------------------


def test_async_actor_learner_with_user_networks_runs_and_reports():
    actor = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))
    critic = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=3e-4)
    learner = AsyncActorLearner(
        actor=actor,
        critic=critic,
        optimizer=optimizer,
        env_factory=partial(make_env, "CartPole-v1"),
        n_actors=2,
        trajectory_len=32,
        seed=0,
    )
    before = [p.detach().clone() for p in actor.parameters()]
    stats = learner.run(max_steps=2_000)
    assert stats["total_steps"] >= 2_000 and stats["total_steps"] % 64 == 0
    assert stats["total_updates"] == stats["total_steps"] // 64
    assert stats["steps_per_second"] > 0 and stats["elapsed"] > 0
    assert stats["actors_replaced"] == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, actor.parameters(), strict=True))


def test_continuous_actions_are_acted_and_learned_from():
    agent = impala("Pendulum-v1")
    pipeline = ActorLearnerPipeline("Pendulum-v1", n_envs=2, window_size=8, seed=0, n_actors=2)
    pipeline.bind(agent)
    try:
        window = pipeline.collect()
        out = agent.learn(window)
    finally:
        pipeline.close()
    assert window.actions.shape == (8, 4, 1) and np.isfinite(list(out.values())).all()
