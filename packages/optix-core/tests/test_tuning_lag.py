"""Online optimizers are scored on experience collected under their own proposals.

The agent's quality depends only on the hyperparameters of its last update,
and shows only in the episodes its policy plays, through the real pipeline
and the default evaluator. An optimizer scored on windows collected before its
proposal (tensor-optix's lag) sees the effect of its previous proposal and
runs to the far bound; scored on its own evidence it finds the optimum.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.callbacks import LoopCallback
from optix_core.loop import RLOptimizer
from optix_core.optimizers import BackoffOptimizer, MomentumOptimizer, PBTOptimizer, SPSAOptimizer
from optix_core.pipeline import VectorBatchPipeline
from optix_core.tuning import ProposalEvidence
from optix_core.types import EpisodeData, HyperparamSet

OPTIMUM = 0.05


class RewardIsTheAction(gym.Env):
    """Five-step episodes whose every reward is the action taken, in [0, 1]."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
    action_space = gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, dtype=np.float32), float(action[0]), False, self.t >= 5, {}


class LastUpdateAgent(BaseAgent):
    """Plays at a quality set by the ``noise_std`` of its last update: 1 at the
    optimum, less the further away (in log) it is."""

    def __init__(self, noise_std: float) -> None:
        self.hp = HyperparamSet({"noise_std": noise_std})
        self.quality = 0.0

    def act(self, observation, deterministic=False):
        return np.full((len(observation), 1), self.quality, dtype=np.float32)

    def learn(self, episode_data):
        distance = math.log(self.hp.params["noise_std"] / OPTIMUM)
        self.quality = math.exp(-0.5 * distance**2)
        return {}

    def get_hyperparams(self):
        return self.hp.copy()

    def set_hyperparams(self, hyperparams):
        self.hp = hyperparams.copy()

    def save_weights(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        state = {"hp": self.hp.to_dict(), "quality": self.quality}
        (Path(path) / "state.json").write_text(json.dumps(state))

    def load_weights(self, path):
        state = json.loads((Path(path) / "state.json").read_text())
        self.hp, self.quality = HyperparamSet.from_dict(state["hp"]), state["quality"]


BOUNDS = {"param_bounds": {"noise_std": (0.001, 0.3)}, "log_scale": ["noise_std"]}


class Proposals(LoopCallback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_hyperparam_update(self, old, new):
        self.values.append(new.params["noise_std"])


def tune(optimizer, start: float, windows: int = 600) -> float:
    """Where the optimizer settled: the geometric median of its last 30 proposals
    (probes straddle the centre; PBT's members take turns)."""
    agent = LastUpdateAgent(start)
    pipeline = VectorBatchPipeline(env_fns=[RewardIsTheAction] * 4, window_size=10, seed=0)
    proposals = Proposals()
    RLOptimizer(
        agent,
        pipeline,
        optimizer=optimizer,
        max_episodes=windows,
        plateau_threshold=10**6,
        dormant_threshold=10**6,  # keep going: this is about tuning, not convergence
        callbacks=[proposals],
    ).run()
    assert len(proposals.values) >= 60
    return float(np.exp(np.median(np.log(proposals.values[-30:]))))


@pytest.mark.parametrize("start", [0.003, 0.25])
@pytest.mark.parametrize(
    "make",
    [
        lambda: SPSAOptimizer(**BOUNDS, seed=0),
        lambda: MomentumOptimizer(**BOUNDS, seed=0),
        lambda: BackoffOptimizer(**BOUNDS, seed=0),
        lambda: PBTOptimizer(**BOUNDS, seed=0),
    ],
    ids=["spsa", "momentum", "backoff", "pbt"],
)
def test_every_online_optimizer_finds_the_optimum_from_either_side(make, start):
    found = tune(make(), start)
    assert OPTIMUM / 1.5 <= found <= OPTIMUM * 1.5, found


# ---- ProposalEvidence on its own -------------------------------------------------------


def window(returns=(), starts=(), steps=8, episodes=True) -> EpisodeData:
    zeros = np.zeros((steps // 2, 2))
    infos = {"episode_returns": np.asarray(returns), "episode_start_steps": np.asarray(starts)}
    return EpisodeData(
        observations=zeros,
        actions=zeros,
        rewards=zeros,
        terminated=zeros.astype(bool),
        truncated=zeros.astype(bool),
        infos=infos if episodes else {},
    )


def test_evidence_skips_a_window_then_keeps_only_episodes_begun_after_it():
    evidence = ProposalEvidence()  # two columns: two episodes wanted
    assert evidence.observe(window([1.0], [0]), env_steps=8) is None  # skipped
    assert evidence.since == 8
    assert evidence.observe(window([2.0, 3.0], [4, 8]), env_steps=16) is None  # 2.0 began at 4
    scored = evidence.observe(window([4.0], [12]), env_steps=24)
    assert scored is not None
    np.testing.assert_array_equal(scored.infos["recent_returns"], [3.0, 4.0])


def test_evidence_without_a_change_needs_no_skip_and_survives_a_resume():
    evidence = ProposalEvidence(min_episodes=1)
    evidence.restart(changed=False)
    restored = ProposalEvidence(min_episodes=1)
    restored.load_state_dict(evidence.state_dict())
    scored = restored.observe(window([5.0], [16]), env_steps=24)
    assert scored is not None and list(scored.infos["recent_returns"]) == [5.0]


def test_a_source_without_episodes_gives_the_first_whole_window_after_the_skip():
    evidence = ProposalEvidence()
    assert evidence.observe(window(episodes=False), env_steps=8) is None
    later = window(episodes=False)
    assert evidence.observe(later, env_steps=16) is later


def test_the_pipeline_says_when_each_episode_began():
    pipe = VectorBatchPipeline(env_fns=[RewardIsTheAction] * 2, window_size=7, seed=0)
    pipe.bind(LastUpdateAgent(OPTIMUM))
    first, second = pipe.collect(), pipe.collect()
    # Five-step episodes on two columns: they begin at env steps 0, 10, 20 of the count.
    assert list(first.infos["episode_start_steps"]) == [0, 0]
    assert list(second.infos["episode_start_steps"]) == [10, 10]
