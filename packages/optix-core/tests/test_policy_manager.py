"""PolicyManager: ensemble bookkeeping, rollback, spawning, adaptive noise, and the
DORMANT callback driving a real RLOptimizer with the CEM agent on CartPole."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.callbacks import LoopCallback
from optix_core.checkpoints import CheckpointError, CheckpointRegistry
from optix_core.evolution import (
    MetaAction,
    MetaController,
    PolicyManager,
    ScoreHistory,
    perturb_hyperparams,
)
from optix_core.hyperparams import Bound, check_hyperparams
from optix_core.loop import RLOptimizer
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import agents, make_agent
from optix_core.search_space import parse_search_space, perturb_params
from optix_core.types import EvalMetrics, HyperparamSet

CEM_SPACE = next(spec for spec in agents() if spec.name == "cem").search_space
ENV = "CartPole-v1"


def cem(seed: int = 0, torn: list | None = None) -> BaseAgent:
    """A CEM agent; with ``torn``, its teardown() appends it there."""
    agent = make_agent("cem", ENV, seed=seed)
    if torn is not None:
        agent.teardown = lambda: torn.append(agent)
    return agent


def save_best(registry: CheckpointRegistry, agent: BaseAgent, score: float) -> None:
    registry.save(
        agent,
        kind="best",
        episode_id=1,
        eval_metrics=EvalMetrics(primary_score=score),
        score=score,
        hyperparams=agent.get_hyperparams(),
    )


def metrics(train: float, val: float | None = None) -> EvalMetrics:
    if val is None:
        return EvalMetrics(primary_score=train)
    return EvalMetrics(primary_score=val, generalization_gap=train - val)


# ---- the ensemble -----------------------------------------------------------------


def test_prune_removes_the_weakest_unpinned_members_and_tears_them_down():
    torn: list = []
    pm = PolicyManager(max_ensemble_size=2)
    live, a, b, c = cem(0, torn), cem(1, torn), cem(2, torn), cem(3, torn)
    pm.add_agent(live, score=-5.0, pinned=True)  # the worst, but pinned
    pm.add_agent(a, score=3.0)
    pm.add_agent(b, score=1.0)
    pm.add_agent(c, score=2.0)
    assert pm.prune() == [b, c]  # down to the limit, lowest score first
    assert torn == [b, c]
    assert pm.agents == [live, a]
    assert pm.pruned == 2
    assert pm.prune() == []  # at the limit
    assert pm.prune(bottom_k=5) == [a]  # never the pinned one
    assert torn == [b, c, a] and pm.agents == [live] and pm.pruned == 3


def test_prune_ranks_unscored_members_lowest_then_by_weight():
    pm = PolicyManager()
    scored, light, heavy = cem(0), cem(1), cem(2)
    pm.add_agent(scored, score=-100.0)
    pm.add_agent(heavy, weight=2.0)
    pm.add_agent(light, weight=0.5)
    assert pm.prune(bottom_k=2) == [light, heavy]


def test_rebalance_weights_are_a_softmax_of_standardised_scores():
    pm = PolicyManager()
    members = [cem(i) for i in range(3)]
    for agent, score in zip(members, (1.0, 2.0, 3.0), strict=True):
        pm.add_agent(agent, score=score)
    z = np.array([-1.0, 0.0, 1.0]) / np.std([1.0, 2.0, 3.0])
    expected = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(pm.rebalance(), expected)
    # Offset and scale of the reward do not matter; negative rewards are fine.
    for agent, score in zip(members, (-300.0, -200.0, -100.0), strict=True):
        pm.set_score(agent, score)
    np.testing.assert_allclose(pm.rebalance(), expected)
    for agent in members:
        pm.set_score(agent, 7.0)
    np.testing.assert_allclose(pm.rebalance(), [1 / 3] * 3)
    unscored = PolicyManager()
    unscored.add_agent(cem(), weight=2.0)
    unscored.add_agent(cem(1), weight=0.5)
    np.testing.assert_allclose(unscored.rebalance(), [2.0, 0.5])  # no evidence: kept


def test_boost_multiplies_a_weight():
    pm = PolicyManager()
    a, b = cem(0), cem(1)
    pm.add_agent(a, weight=0.5)
    pm.add_agent(b)
    assert pm.boost(a, 3.0) == 1.5
    np.testing.assert_allclose(pm.weights, [1.5, 1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_ensemble_size": 0}, "max_ensemble_size"),
        ({"min_scale": 0.2, "max_scale": 0.1}, "min_scale <= max_scale"),
        ({"min_scale": -0.1}, "min_scale"),
        ({"base_noise": -1.0}, "base_noise"),
        ({"max_spawns": -1}, "max_spawns"),
        ({"max_slope": 0.0}, "max_slope"),
        ({"degradation_threshold": 0.0}, "degradation_threshold"),
        ({"history_window": 1}, "maxlen"),
        # the search-space parser's rules, the same as trials' and the optimizers'
        ({"search_space": {"lr": ("loguniform", 1e-4, 1e-2)}}, "unknown kind 'loguniform'"),
        ({"search_space": {"lr": ("log_float", 0.0, 1e-2)}}, "needs lo > 0"),
        ({"search_space": {"lr": ("float", 1.0, 0.5)}}, "greater than hi"),
        ({"search_space": {"act": ("categorical", "tanh", "tanh")}}, "repeat a value"),
        ({"search_space": {"n": ("int", 1.5, 4)}}, "bounds must be integers"),
    ],
)
def test_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolicyManager(**kwargs)


def test_rejects_bad_weights_and_members():
    pm = PolicyManager()
    agent = cem()
    for weight in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
            pm.add_agent(agent, weight=weight)
    pm.add_agent(agent)
    with pytest.raises(ValueError, match="already a member"):
        pm.add_agent(agent)
    with pytest.raises(ValueError, match="factor must be"):
        pm.boost(agent, -2.0)
    with pytest.raises(ValueError, match="not a member"):
        pm.boost(cem(1))
    with pytest.raises(ValueError, match="bottom_k"):
        pm.prune(bottom_k=-1)


# ---- the best checkpoint: rollback, respawn, spawn_variant, freeze --------------------


def test_rollback_when_degraded(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    pm = PolicyManager(registry, degradation_threshold=0.9)
    agent = cem()
    pm.add_agent(agent)
    assert not pm.is_degraded(-1e9)  # nothing to compare with yet
    assert not pm.rollback(agent)
    agent.mean[:] = 1.0
    save_best(registry, agent, 200.0)
    assert not pm.is_degraded(180.0)  # a 10% drop is tolerated ...
    assert pm.is_degraded(179.9)  # ... more is not
    agent.mean[:] = 0.0
    assert pm.rollback(agent)
    np.testing.assert_array_equal(agent.mean, 1.0)
    assert pm.score_of(agent) == 200.0


def test_respawn_loads_the_best_and_perturbs_within_the_search_space(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    best = cem(0)
    best.mean[:] = 0.5
    save_best(registry, best, 100.0)
    pm = PolicyManager(registry, max_spawns=2, search_space=CEM_SPACE, seed=0)
    agent = cem(1)
    hyperparams = pm.respawn(agent)
    np.testing.assert_array_equal(agent.mean, 0.5)
    assert agent.get_hyperparams().params == hyperparams.params
    before = best.get_hyperparams().params
    for key, (kind, low, high) in CEM_SPACE.items():
        assert low <= hyperparams.params[key] <= high
        if kind == "int":
            assert isinstance(hyperparams.params[key], int)
        else:
            assert hyperparams.params[key] != before[key], key
    assert hyperparams.params["hidden_size"] == before["hidden_size"]  # not in the space
    assert pm.spawns_used == 1 and pm.spawns_left == 1
    pm.respawn(agent)
    assert pm.budget_exhausted
    with pytest.raises(RuntimeError, match="spawn budget"):
        pm.respawn(agent)


def test_spawn_variant_adds_a_shell_holding_the_best(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    torn: list = []
    pm = PolicyManager(registry, seed=0)
    with pytest.raises(CheckpointError, match="no best checkpoint"):
        pm.spawn_variant(lambda: cem(5, torn))
    assert len(torn) == 1 and pm.ensemble_size == 0 and pm.spawns_used == 0
    best = cem(0)
    best.mean[:] = 2.0
    save_best(registry, best, 42.0)
    variant = pm.spawn_variant(lambda: cem(5), weight=0.5)
    assert pm.agents == [variant]
    np.testing.assert_array_equal(variant.mean, 2.0)
    assert pm.weight_of(variant) == 0.5 and pm.score_of(variant) == 42.0
    assert pm.spawns_used == 1


def test_freeze_copies_the_current_state_into_a_new_member():
    pm = PolicyManager()
    agent = cem(0)
    agent.mean[:] = 3.0
    agent.set_hyperparams(HyperparamSet({"noise_std": 0.2}))
    pm.add_agent(agent, weight=0.7, score=9.0)
    frozen = pm.freeze(agent, lambda: cem(1))
    np.testing.assert_array_equal(frozen.mean, 3.0)
    assert frozen.get_hyperparams().params == agent.get_hyperparams().params
    assert pm.weight_of(frozen) == 0.7 and pm.score_of(frozen) == 9.0
    agent.mean[:] = 0.0  # a copy, not a view
    np.testing.assert_array_equal(frozen.mean, 3.0)


def test_perturbation_rules():
    rng = np.random.default_rng(0)
    hp = HyperparamSet({"lr": 1e-3, "clip": 0.2, "batch": 64, "net": "mlp", "norm": True})
    space = {
        "lr": ("log_float", 1e-4, 1e-2),
        "clip": ("float", 0.1, 0.3),
        "batch": ("log_int", 32, 256),
        "net": ("categorical", "mlp", "cnn"),
    }
    for _ in range(200):
        p = perturb_hyperparams(hp, 0.5, rng, space).params
        assert 1e-4 <= p["lr"] <= 1e-2 and 0.1 <= p["clip"] <= 0.3
        assert isinstance(p["batch"], int) and 32 <= p["batch"] <= 256
        assert p["net"] == "mlp" and p["norm"] is True
    free = perturb_hyperparams(HyperparamSet({"a": -2.0, "n": 8, "b": True}), 0.1, rng).params
    assert free["a"] < 0 and free["a"] != -2.0  # floats move, keeping their sign
    assert free["n"] == 8 and free["b"] is True  # sizes and flags stay
    assert perturb_hyperparams(hp, 0.0, rng, space).params == hp.params
    with pytest.raises(ValueError, match="not a number"):
        perturb_hyperparams(HyperparamSet({"lr": "fast"}), 0.1, rng, space)


# ---- adaptive noise -----------------------------------------------------------------


def test_three_signal_noise_on_a_constructed_history():
    pm = PolicyManager(min_scale=0.01, max_scale=0.2, max_slope=0.1)
    pm.observe(cem(), metrics(10.0, 10.0))
    assert pm.noise_scale() == pytest.approx(0.2)  # no trend yet: explore fully
    pm.history = ScoreHistory(20)
    train, val = [10.0, 13.0, 14.0, 19.0], [10.0, 10.5, 11.5, 12.0]
    for t, v in zip(train, val, strict=True):
        pm.observe(cem(), metrics(t, v))
    val_slope = np.polyfit(np.arange(4), val, 1)[0]  # 0.7 per evaluation
    t = min(1.0, val_slope / np.mean(val) / 0.1)
    gap_penalty = np.mean(np.subtract(train, val)) / np.mean(val)
    corr_penalty = 1.0 - np.corrcoef(train, val)[0, 1]
    assert 0 < t < 1 and 0 < gap_penalty < 1 and 0 < corr_penalty < 1
    effective_t = t * (1 - 0.5 * gap_penalty) * (1 - 0.5 * corr_penalty)
    assert pm.noise_scale() == pytest.approx(0.2 - effective_t * (0.2 - 0.01))


@pytest.mark.parametrize(
    "train, val, expected",
    [
        # val rises fast, in step with train, no gap: exploit fully
        ([10, 20, 30, 40], [10, 20, 30, 40], 0.01),
        # val flat while train climbs: a plateau, explore fully
        ([10, 20, 30, 40], [10, 10, 10, 10], 0.2),
        # val rises fast but trails train by 100%: t is halved by the gap penalty
        ([20, 40, 60, 80], [10, 20, 30, 40], 0.2 - 0.5 * 0.19),
    ],
)
def test_three_signal_noise_limits(train, val, expected):
    pm = PolicyManager(min_scale=0.01, max_scale=0.2)
    for t, v in zip(train, val, strict=True):
        pm.observe(cem(), metrics(t, v))
    assert pm.noise_scale() == pytest.approx(expected)


def test_single_signal_noise_without_validation():
    pm = PolicyManager(base_noise=0.1)
    assert pm.noise_scale() == pytest.approx(0.1)
    for score in (100.0, 110.0, 120.0, 130.0):
        pm.observe(cem(), metrics(score))
    ratio = 10.0 / 115.0 * 3  # slope / mean(|score|) × (n − 1)
    assert pm.noise_scale() == pytest.approx(0.1 / (1 + ratio))
    declining = PolicyManager(base_noise=0.1)
    for score in (130.0, 120.0, 110.0):
        declining.observe(cem(), metrics(score))
    assert declining.noise_scale() == pytest.approx(0.1)  # stuck: explore fully


# ---- the DORMANT callback in a real loop ----------------------------------------------


class DormantLog(LoopCallback):
    """After the PolicyManager's callback: what each DORMANT left behind."""

    def __init__(self, agent: BaseAgent, pm: PolicyManager) -> None:
        self.agent, self.pm = agent, pm
        self.after: list[tuple[int, dict, int]] = []

    def on_dormant(self, episode_id):
        hp = self.agent.get_hyperparams().params
        self.after.append((episode_id, hp, self.pm.ensemble_size))


def cartpole_loop(agent, callbacks, max_episodes, **kwargs) -> RLOptimizer:
    pipe = VectorBatchPipeline(env_id=ENV, n_envs=4, window_size=50, seed=0)
    return RLOptimizer(
        agent,
        pipe,
        callbacks=callbacks,
        plateau_threshold=2,
        dormant_threshold=3,
        max_interval_episodes=2,
        max_episodes=max_episodes,
        **kwargs,
    )


def test_spawns_on_dormant_prunes_and_stops_when_the_budget_is_spent(capsys):
    torn: list = []
    agent = cem(0)
    pm = PolicyManager(max_spawns=2, max_ensemble_size=2, search_space=CEM_SPACE, seed=0)
    callback = pm.as_callback(agent, agent_factory=lambda: cem(1, torn))
    log = DormantLog(agent, pm)
    loop = cartpole_loop(agent, [callback, log], max_episodes=300)
    callback.set_stop_fn(loop.stop)
    initial = agent.get_hyperparams().params
    report = loop.run()

    assert report.stop_reason == "Spawn budget exhausted"
    assert report.episodes < 300
    # Two DORMANTs spawn, the third finds the budget spent and stops.
    assert len(log.after) == 3 and report.episodes == log.after[-1][0]
    assert [size for _, _, size in log.after] == [2, 2, 2]  # 1 + 1, then 1 + 2 pruned to 2
    for _, hp, _ in log.after[:2]:
        assert hp != initial  # the loop trains the perturbed variant
    assert pm.spawns_used == 2 and pm.pruned == 1 and pm.ensemble_size == 2
    assert len(torn) == 1 and torn[0] not in pm
    assert agent in pm and pm.members[0].pinned
    out = capsys.readouterr().out
    assert out.count("Training Complete") == 1
    assert "Reason           : Spawn budget exhausted" in out
    assert "Best score       : " in out
    assert "Val score        : n/a" in out
    assert "Spawns used      : 2 / 2" in out
    assert "Pruned agents    : 1" in out
    assert "Ensemble size    : 2" in out


def test_without_a_stop_function_the_report_prints_but_the_loop_runs_on(capsys, caplog):
    agent = cem(0)
    pm = PolicyManager(max_spawns=1, seed=0)
    callback = pm.as_callback(agent)  # no factory: variants restart the agent in place
    log = DormantLog(agent, pm)
    report = cartpole_loop(agent, [callback, log], max_episodes=40).run()
    assert report.stop_reason == "max_episodes (40 windows) reached"
    assert len(log.after) >= 3  # DORMANTs after the budget ran out did not stop it
    assert pm.spawns_used == 1 and pm.ensemble_size == 1
    out = capsys.readouterr().out
    assert out.count("Training Complete") == 1
    assert "Spawns used      : 1 / 1" in out
    assert "no stop function" in caplog.text


class ScriptedDecider:
    def __init__(self, *actions: MetaAction) -> None:
        self.actions = list(actions)
        self.calls: list[tuple[int, int | None, int | None]] = []

    def decide(self, history, *, spawns_left, prunable):
        self.calls.append((len(history), spawns_left, prunable))
        return self.actions.pop(0)


def test_the_callback_carries_out_the_meta_controllers_decisions(capsys):
    torn: list = []
    agent = cem(0)
    pm = PolicyManager(max_spawns=3, seed=0)
    decider = ScriptedDecider(MetaAction.SPAWN, MetaAction.PRUNE, MetaAction.NO_OP, MetaAction.STOP)
    callback = pm.as_callback(agent, agent_factory=lambda: cem(1, torn), meta_controller=decider)
    log = DormantLog(agent, pm)
    loop = cartpole_loop(agent, [callback, log], max_episodes=300)
    callback.set_stop_fn(loop.stop)
    report = loop.run()
    assert [size for _, _, size in log.after] == [2, 1, 1, 1]
    assert [(left, prunable) for _, left, prunable in decider.calls] == [
        (3, 0),
        (2, 1),
        (2, 0),
        (2, 0),
    ]
    assert len(torn) == 1 and pm.pruned == 1 and pm.spawns_used == 1
    assert report.stop_reason == "MetaController decision"
    assert "Reason           : MetaController decision" in capsys.readouterr().out


def test_meta_controller_with_validation_end_to_end():
    agent = cem(0)
    val = VectorBatchPipeline(env_id=ENV, n_envs=2, window_size=100, seed=1, deterministic=True)
    pm = PolicyManager(max_spawns=2, search_space=CEM_SPACE, seed=0)
    meta = MetaController()
    callback = pm.as_callback(agent, agent_factory=lambda: cem(1), meta_controller=meta)
    loop = cartpole_loop(agent, [callback], max_episodes=150, val_pipeline=val)
    callback.set_stop_fn(loop.stop)
    report = loop.run()
    assert pm.history.has_validation and meta.signals(pm.history).gap_level is not None
    assert report.val_score is not None and report.generalization_gap is not None
    assert report.stop_reason in ("Spawn budget exhausted", "max_episodes (150 windows) reached")
    assert pm.registry is None  # the loop's temporary registry was only borrowed


def test_a_resumed_run_keeps_the_spawn_budget_it_spent(tmp_path):
    def run(resume: bool, max_episodes: int) -> PolicyManager:
        agent = cem(0)
        pm = PolicyManager(max_spawns=2, search_space=CEM_SPACE, seed=0)
        callback = pm.as_callback(agent)
        loop = cartpole_loop(
            agent, [callback], max_episodes, checkpoint_dir=tmp_path, resume=resume
        )
        callback.set_stop_fn(loop.stop)
        loop.run()
        return pm

    first = run(False, 40)
    assert first.spawns_used >= 1
    resumed = run(True, 41)
    assert resumed.spawns_used >= first.spawns_used


# ---- spawns stay inside the valid ranges; a failed spawn is counted and undone -------------


class PPOLike(BaseAgent):
    """A framework-free agent with PPO's hyperparameters and valid ranges: its
    ``set_hyperparams`` refuses γ or λ above 1, as the torch agents' do, and a
    checkpoint holds its weights and hyperparameters."""

    DEFAULTS: ClassVar[dict] = {
        "learning_rate": 3e-4,
        "clip_ratio": 0.2,
        "entropy_coef": 0.01,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "n_epochs": 10,
    }
    BOUNDS: ClassVar[dict] = {
        "learning_rate": Bound(0.0, 1.0, open_low=True),
        "clip_ratio": Bound(0.0, 1.0, open_low=True),
        "entropy_coef": Bound(0.0, 1.0),
        "gamma": Bound(0.0, 1.0),
        "gae_lambda": Bound(0.0, 1.0),
        "n_epochs": Bound(1, 1000, integer=True),
    }

    def __init__(self, declares_bounds: bool = True, space: dict | None = None) -> None:
        self.w = np.zeros(3)
        self.hp = HyperparamSet(dict(self.DEFAULTS))
        self.declares_bounds = declares_bounds
        self.space = space or {}

    def act(self, observation, deterministic=False):
        return np.zeros(len(observation), dtype=np.int64)

    def learn(self, episode_data):
        return {}

    def get_hyperparams(self):
        return self.hp.copy()

    def set_hyperparams(self, hyperparams):
        merged = {**self.hp.params, **hyperparams.params}
        self.hp = HyperparamSet(check_hyperparams(merged, self.BOUNDS, "ppo-like"))

    def save_weights(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        np.save(Path(path) / "w.npy", self.w)
        (Path(path) / "hp.json").write_text(json.dumps(self.hp.to_dict()))

    def load_weights(self, path):
        self.w = np.load(Path(path) / "w.npy")
        self.hp = HyperparamSet.from_dict(json.loads((Path(path) / "hp.json").read_text()))

    @property
    def search_space(self):
        return dict(self.space)

    @property
    def hyperparam_bounds(self):
        return dict(self.BOUNDS) if self.declares_bounds else {}


def test_default_spawns_of_a_ppo_like_agent_keep_gamma_and_lambda_in_range(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    save_best(registry, PPOLike(), 10.0)
    pm = PolicyManager(registry, max_spawns=None, seed=0)  # no search space: the free rule
    agent = PPOLike()
    moved = 0
    for _ in range(200):
        hp = pm.respawn(agent).params
        assert 0.0 < hp["gamma"] <= 1.0 and 0.0 < hp["gae_lambda"] <= 1.0
        assert agent.get_hyperparams().params == hp
        moved += hp["gamma"] != 0.99
    assert moved > 150  # the floats do move, ...
    assert pm.spawns_used == 200 and pm.failed_spawns == 0  # ... and no spawn failed
    # The noise that put γ above 1 in ~47% of spawns (scale 0.05, γ 0.99):
    assert pm.noise_scale() == pytest.approx(0.05)


def test_spawns_perturb_the_agents_declared_search_space_by_default(tmp_path):
    registry = CheckpointRegistry(tmp_path)
    space = {"learning_rate": ("log_float", 1e-4, 3e-3), "entropy_coef": ("log_float", 1e-4, 0.05)}
    save_best(registry, PPOLike(space=space), 10.0)
    pm = PolicyManager(registry, max_spawns=None, seed=0)
    agent = PPOLike(space=space)
    for _ in range(50):
        hp = pm.respawn(agent).params
        assert 1e-4 <= hp["learning_rate"] <= 3e-3 and 1e-4 <= hp["entropy_coef"] <= 0.05
        assert {k for k in hp if hp[k] != PPOLike.DEFAULTS[k]} <= set(space)


def test_a_given_search_space_perturbs_with_the_shared_rule():
    space = {"lr": ("log_float", 1e-4, 1e-2), "clip": ("float", 0.1, 0.3), "batch": ("int", 8, 64)}
    hp = HyperparamSet({"lr": 1e-3, "clip": 0.2, "batch": 32, "net": "mlp"})
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    parsed = parse_search_space(space)
    for _ in range(20):
        expected = perturb_params(hp.params, parsed, 0.3, b, noise="normal")
        assert perturb_hyperparams(hp, 0.3, a, space).params == expected
    # A degenerate range is one value, as in a trial.
    fixed = perturb_hyperparams(HyperparamSet({"x": 0.7}), 0.3, a, {"x": ("float", 0.5, 0.5)})
    assert fixed.params == {"x": 0.5}
    assert PolicyManager(search_space={"x": ("float", 0.5, 0.5)}).search_space


class Refuses(PPOLike):
    """Takes the hyperparameters it was built with, and refuses any others."""

    def set_hyperparams(self, hyperparams):
        if {**self.hp.params, **hyperparams.params} != self.hp.params:
            raise ValueError("ppo-like: these hyperparameters are refused")


def test_a_refused_respawn_leaves_the_agent_as_it_was_and_is_counted(tmp_path, caplog):
    registry = CheckpointRegistry(tmp_path)
    best = PPOLike()
    best.w[:] = 1.0
    save_best(registry, best, 10.0)
    pm = PolicyManager(registry, max_spawns=3, seed=0)
    agent = Refuses()
    agent.w[:] = 5.0
    pm.add_agent(agent, score=3.0)
    with pytest.raises(ValueError, match="refused"):
        pm.respawn(agent)
    np.testing.assert_array_equal(agent.w, 5.0)  # not rolled back to the best either
    assert agent.get_hyperparams().params == PPOLike.DEFAULTS
    assert pm.score_of(agent) == 3.0
    assert pm.failed_spawns == 1 and pm.spawns_used == 0
    assert pm.spawns_left == 2  # a failed attempt uses its share of the budget
    assert "spawn failed" in caplog.text


def test_a_failed_spawn_on_dormant_adds_no_frozen_member_and_the_run_goes_on(tmp_path, caplog):
    registry = CheckpointRegistry(tmp_path)
    save_best(registry, PPOLike(), 10.0)
    pm = PolicyManager(registry, max_spawns=2, seed=0)
    agent = Refuses()
    agent.w[:] = 5.0
    shells: list = []
    torn: list = []
    callback = pm.as_callback(agent, agent_factory=lambda: _tracked(shells, torn))
    callback.on_dormant(7)
    assert pm.agents == [agent]  # the ensemble is as it was: no frozen member
    assert len(shells) == 1 and torn == shells  # the frozen copy was torn down
    assert pm.failed_spawns == 1 and pm.spawns_used == 0
    np.testing.assert_array_equal(agent.w, 5.0)
    assert "spawn failed" in caplog.text
    assert callback.state_dict()["failed_spawns"] == 1
    callback.on_dormant(8)  # the callback still works: a second attempt ...
    assert pm.failed_spawns == 2 and pm.budget_exhausted  # ... spends the budget
    assert "Failed spawns    : 2" in callback.format_report("Spawn budget exhausted")


def _tracked(shells: list, torn: list) -> PPOLike:
    shell = PPOLike()
    shell.teardown = lambda: torn.append(shell)
    shells.append(shell)
    return shell
