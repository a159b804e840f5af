"""The online optimizers inside RLOptimizer: what they propose reaches the agent, probes
are not mistaken for degradation, a resumed loop continues them exactly, CEM still converges."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.callbacks import LoopCallback
from optix_core.evaluation import evaluate_policy
from optix_core.evaluator import BaseEvaluator
from optix_core.loop import RLOptimizer
from optix_core.optimizer import BaseOptimizer
from optix_core.optimizers import (
    BackoffOptimizer,
    MomentumOptimizer,
    PBTOptimizer,
    SPSAOptimizer,
)
from optix_core.pipeline import BatchPipeline, VectorBatchPipeline
from optix_core.registry import make_agent
from optix_core.types import EvalMetrics, HyperparamSet, LoopState

# ---- test doubles: an agent whose skill is a function of its hyperparameters ---------


class KnobAgent(BaseAgent):
    """Scores 100 at ``noise_std = 0.05`` and less the further (in log) it is from it.

    Its hyperparameters are saved with its weights, as CEM's are, so a restored
    checkpoint brings back the hyperparameters it was trained under.
    """

    def __init__(self) -> None:
        self.hp = HyperparamSet({"noise_std": 0.05})

    def act(self, observation, deterministic=False):
        return np.zeros(len(observation), dtype=np.int64)

    def learn(self, episode_data):
        return {"skill": 100.0 - 100.0 * abs(math.log(self.hp.params["noise_std"] / 0.05))}

    def get_hyperparams(self):
        return self.hp.copy()

    def set_hyperparams(self, hyperparams):
        self.hp = hyperparams.copy()

    def save_weights(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "knob.json").write_text(json.dumps(self.hp.to_dict()))

    def load_weights(self, path):
        self.hp = HyperparamSet.from_dict(json.loads((Path(path) / "knob.json").read_text()))


class SkillEvaluator(BaseEvaluator):
    def score(self, episode_data, train_diagnostics):
        return EvalMetrics(train_diagnostics["skill"], episode_id=episode_data.episode_id)


class Watcher(LoopCallback):
    """Records scores (with whether the optimizer was probing), degradations and updates."""

    def __init__(self, agent: BaseAgent, optimizer: BaseOptimizer) -> None:
        self.agent = agent
        self.optimizer = optimizer
        self.loop: RLOptimizer | None = None
        self.windows: list[tuple[int, float, bool]] = []
        self.degradations: list[int] = []
        self.updates: list[tuple[int, dict, dict, dict]] = []

    def on_loop_start(self, loop):
        self.loop = loop

    def on_episode_end(self, episode_id, metrics):
        probing = bool(metrics.metrics["tuning_probe"])
        self.windows.append((episode_id, metrics.primary_score, probing))

    def on_degradation(self, episode_id, metrics):
        self.degradations.append(episode_id)

    def on_hyperparam_update(self, old, new):
        assert self.loop is not None
        after = self.agent.get_hyperparams().params
        self.updates.append((self.loop.episode, dict(old.params), dict(new.params), dict(after)))


class Recording(BaseOptimizer):
    """Wraps an optimizer and keeps every (current, proposed) pair it was asked about."""

    def __init__(self, inner: BaseOptimizer) -> None:
        self.inner = inner
        self.proposals: list[tuple[dict, dict]] = []

    def suggest(self, current, metrics):
        proposed = self.inner.suggest(current, metrics)
        self.proposals.append((dict(current.params), dict(proposed.params)))
        return proposed

    @property
    def is_probing(self) -> bool:
        return self.inner.is_probing

    def changed(self) -> list[tuple[dict, dict]]:
        return [(current, proposed) for current, proposed in self.proposals if current != proposed]


NOISE_STD = {"param_bounds": {"noise_std": (0.001, 0.3)}, "log_scale": ["noise_std"]}
DENSE = {"score_smoothing": 1, "noise_k": 0.0, "max_interval_episodes": 1}


def knob_loop(agent: KnobAgent, optimizer: BaseOptimizer, **kwargs) -> RLOptimizer:
    """Evaluates every window and never goes DORMANT: these tests are about tuning."""
    pipe = BatchPipeline(env_id="CartPole-v1", window_size=2, seed=0)
    return RLOptimizer(
        agent,
        pipe,
        evaluator=SkillEvaluator(),
        optimizer=optimizer,
        **{**DENSE, "plateau_threshold": 10**6, "dormant_threshold": 10**6, **kwargs},
    )


# ---- what is proposed is what the agent trains with ------------------------------------


@pytest.mark.parametrize("cls", [SPSAOptimizer, MomentumOptimizer, BackoffOptimizer, PBTOptimizer])
def test_every_proposal_reaches_the_agent(cls):
    agent = KnobAgent()
    optimizer = Recording(cls(**NOISE_STD, seed=0))
    watcher = Watcher(agent, optimizer)
    knob_loop(
        agent, optimizer, min_episodes_before_degradation=1, max_episodes=200, callbacks=[watcher]
    ).run()
    changed = optimizer.changed()
    assert len(changed) >= 10
    assert [(old, new) for _, old, new, _ in watcher.updates] == changed
    assert all(after == new for _, _, new, after in watcher.updates)
    probing = {episode for episode, _, flagged in watcher.windows if flagged}
    assert probing and not probing & set(watcher.degradations)


# ---- probes and degradation ------------------------------------------------------------


def test_probe_windows_are_flagged_and_never_counted_as_degradation():
    agent = KnobAgent()
    spsa = SPSAOptimizer(**NOISE_STD, a=0.0, seed=0)  # a=0: the centre stays at the best, 0.05
    watcher = Watcher(agent, spsa)
    knob_loop(
        agent, spsa, min_episodes_before_degradation=1, max_episodes=120, callbacks=[watcher]
    ).run()
    probes = [score for _, score, probing in watcher.windows if probing]
    centres = [score for _, score, probing in watcher.windows if not probing]
    assert len(probes) >= 20 and len(centres) >= 10
    assert max(probes) < 60 and min(centres) > 99.99  # every probe dropped well below 95% of 100
    assert watcher.degradations == []


def test_the_same_drops_are_degradation_when_not_flagged_as_probes():
    class Unflagged(SPSAOptimizer):
        @property
        def is_probing(self) -> bool:
            return False

    agent = KnobAgent()
    spsa = Unflagged(**NOISE_STD, a=0.0, seed=0)
    watcher = Watcher(agent, spsa)
    knob_loop(
        agent, spsa, min_episodes_before_degradation=1, max_episodes=120, callbacks=[watcher]
    ).run()
    dropped = [episode for episode, score, _ in watcher.windows if score < 60]
    assert len(dropped) >= 20 and watcher.degradations == dropped


# ---- resume ----------------------------------------------------------------------------


def test_a_resumed_loop_continues_the_optimizer_exactly(tmp_path):
    def run(directory: Path, max_episodes: int, resume: bool = False) -> Watcher:
        agent = KnobAgent()
        spsa = SPSAOptimizer(**NOISE_STD, seed=1234 if resume else 7)  # resume: state wins
        watcher = Watcher(agent, spsa)
        knob_loop(
            agent,
            spsa,
            checkpoint_dir=directory,
            resume=resume,
            max_episodes=max_episodes,
            callbacks=[watcher],
        ).run()
        return watcher

    # KnobAgent does not continue episodes on a resume, so the environments restart
    # and proposals may land on other windows; their sequence carries on unchanged.
    straight = run(tmp_path / "straight", 150)
    run(tmp_path / "split", 40)
    resumed = run(tmp_path / "split", 150, resume=True)
    before = len([u for u in straight.updates if u[0] <= 40])
    after_split = [(old, new) for _, old, new, _ in straight.updates][before:]
    proposed = [(old, new) for _, old, new, _ in resumed.updates]
    common = min(len(after_split), len(proposed))
    assert common >= 5 and proposed[:common] == after_split[:common]


# ---- the real thing: CEM on CartPole with SPSA tuning its noise ---------------------------


def test_spsa_tunes_cem_on_cartpole_every_proposal_reaches_the_agent_and_it_converges():
    agent = make_agent("cem", "CartPole-v1", seed=0)
    spsa = Recording(SPSAOptimizer(**NOISE_STD, seed=0))
    watcher = Watcher(agent, spsa)
    pipe = VectorBatchPipeline(env_id="CartPole-v1", n_envs=8, window_size=500, seed=0)
    try:
        report = RLOptimizer(
            agent,
            pipe,
            optimizer=spsa,
            dormant_threshold=10,
            max_interval_episodes=8,
            callbacks=[watcher],
        ).run()
    finally:
        pipe.close()

    changed = spsa.changed()
    assert len(changed) >= 10
    # Every change the optimizer proposed was announced, with the agent holding it afterwards.
    assert [(old, new) for _, old, new, _ in watcher.updates] == changed
    assert all(after == new for _, _, new, after in watcher.updates)
    values = [new["noise_std"] for _, new in changed]
    assert all(0.001 <= v <= 0.3 for v in values) and len(set(values)) >= 8
    assert all(new["elite_frac"] == 0.25 for _, new in changed)  # not in param_bounds
    assert {probing for _, _, probing in watcher.windows} == {True, False}

    assert report.final_state is LoopState.DORMANT
    evaluation = evaluate_policy(agent, "CartPole-v1", episodes=20, seed=0)
    assert evaluation.mean >= 475, str(evaluation)


def test_the_default_tuner_follows_the_pipelines_seed():
    """RLOptimizer's own SPSA (no optimizer given) draws its probes from the
    pipeline's seed: a seeded run proposes, and so trains, the same each time."""

    def proposals(seed: int) -> list[dict]:
        agent = make_agent("cem", "CartPole-v1", seed=0)  # tunes noise_std
        pipe = VectorBatchPipeline(env_id="CartPole-v1", n_envs=2, window_size=100, seed=seed)
        watcher = Watcher(agent, None)
        try:
            RLOptimizer(agent, pipe, max_episodes=12, callbacks=[watcher]).run()
        finally:
            pipe.close()
        return [new for _, _, new, _ in watcher.updates]

    first = proposals(seed=3)
    assert len(first) >= 4
    assert proposals(seed=3) == first
    assert proposals(seed=4) != first
