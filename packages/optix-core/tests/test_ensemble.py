"""EnsembleAgent: weighted mean and weighted vote on batched observations, and
delegation of everything else to the primary."""

from __future__ import annotations

import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.evolution import EnsembleAgent, PolicyManager
from optix_core.hyperparams import Bound
from optix_core.loop import RLOptimizer
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import make_agent
from optix_core.types import HyperparamSet

OBS = np.zeros((3, 4), dtype=np.float32)  # a batch of three observations


class Fixed(BaseAgent):
    """Plays ``actions`` (one row per observation) whatever it observes."""

    def __init__(self, actions) -> None:
        self.actions = np.asarray(actions)
        self.calls = 0

    def act(self, observation, deterministic=False):
        self.calls += 1
        assert len(observation) == len(self.actions)
        return self.actions

    def learn(self, episode_data):
        return {}

    def get_hyperparams(self):
        return HyperparamSet()

    def set_hyperparams(self, hyperparams):
        pass

    def save_weights(self, path):
        pass

    def load_weights(self, path):
        pass


def ensemble(*members: tuple[BaseAgent, float], **kwargs) -> EnsembleAgent:
    pm = PolicyManager()
    for agent, weight in members:
        pm.add_agent(agent, weight)
    return EnsembleAgent(pm, members[0][0], **kwargs)


def test_continuous_actions_are_the_weighted_mean():
    a = Fixed(np.array([[0.0, 1.0], [2.0, 2.0], [-1.0, 0.0]], dtype=np.float32))
    b = Fixed(np.array([[4.0, 1.0], [2.0, 6.0], [3.0, 8.0]], dtype=np.float32))
    actions = ensemble((a, 1.0), (b, 3.0)).act(OBS)
    # a = (1·a₁ + 3·a₂) / 4
    np.testing.assert_allclose(actions, [[3.0, 1.0], [2.0, 5.0], [2.0, 6.0]])
    assert actions.dtype == np.float32 and actions.shape == (3, 2)


def test_discrete_actions_are_a_weighted_vote():
    a = Fixed([0, 1, 2])
    b = Fixed([1, 1, 0])
    c = Fixed([1, 2, 0])
    actions = ensemble((a, 3.0), (b, 2.0), (c, 2.0)).act(OBS)
    # row 0: 0 has 3, 1 has 2 + 2; row 1: 1 has 3 + 2; row 2: 2 has 3, 0 has 2 + 2
    np.testing.assert_array_equal(actions, [1, 1, 0])
    assert actions.dtype == a.actions.dtype


def test_a_tied_vote_goes_to_the_earliest_member():
    actions = ensemble((Fixed([0, 5]), 1.0), (Fixed([3, 4]), 1.0)).act(OBS[:2])
    np.testing.assert_array_equal(actions, [0, 5])


def test_multi_discrete_votes_element_by_element():
    a = Fixed([[0, 1], [1, 1], [2, 2]])
    b = Fixed([[0, 0], [1, 0], [0, 2]])
    c = Fixed([[1, 0], [0, 0], [0, 1]])
    actions = ensemble((a, 1.0), (b, 1.0), (c, 1.0)).act(OBS)
    np.testing.assert_array_equal(actions, [[0, 0], [1, 0], [0, 2]])


def test_discrete_can_be_forced_either_way():
    mean = ensemble((Fixed([0, 2, 4]), 1.0), (Fixed([2, 2, 0]), 1.0), discrete=False).act(OBS)
    np.testing.assert_array_equal(mean, [1, 2, 2])
    vote = ensemble(
        (Fixed(np.array([0.5, 1.0, 2.0])), 2.0),
        (Fixed(np.array([1.0, 1.0, 0.0])), 1.0),
        discrete=True,
    ).act(OBS)
    np.testing.assert_array_equal(vote, [0.5, 1.0, 2.0])


def test_members_without_weight_do_not_act():
    silent = Fixed([9, 9, 9])
    actions = ensemble((Fixed([1, 2, 3]), 1.0), (silent, 0.0)).act(OBS)
    np.testing.assert_array_equal(actions, [1, 2, 3])
    assert silent.calls == 0


def test_bad_ensembles_are_refused():
    with pytest.raises(ValueError, match="every ensemble weight is 0"):
        ensemble((Fixed([1, 2, 3]), 0.0)).act(OBS)
    with pytest.raises(ValueError, match="different shapes"):
        ensemble((Fixed([1, 2, 3]), 1.0), (Fixed([[1], [2], [3]]), 1.0)).act(OBS)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        ensemble((Fixed([1, 2, 3]), -1.0))
    ens = ensemble((Fixed([1, 2, 3]), 1.0))
    with pytest.raises(ValueError, match="member of its own PolicyManager"):
        ens.policy_manager.as_callback(ens)


def test_real_cem_members_on_batched_observations():
    observations = np.random.default_rng(0).normal(size=(16, 3))
    members = [make_agent("cem", "Pendulum-v1", seed=s) for s in range(3)]
    for i, agent in enumerate(members):
        agent.mean = np.random.default_rng(i).normal(size=agent.mean.size)
    pm = PolicyManager()
    for agent, weight in zip(members, (1.0, 2.0, 5.0), strict=True):
        pm.add_agent(agent, weight)
    mean = EnsembleAgent(pm, members[0]).act(observations, deterministic=True)
    each = np.stack([a.act(observations, deterministic=True) for a in members])
    expected = np.tensordot([1.0, 2.0, 5.0], each.astype(np.float64), axes=1) / 8.0
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    assert mean.shape == (16, 1)

    carts = [make_agent("cem", "CartPole-v1", seed=s) for s in range(3)]
    for i, agent in enumerate(carts):
        agent.mean = np.random.default_rng(10 + i).normal(size=agent.mean.size)
    pm = PolicyManager()
    for agent, weight in zip(carts, (1.0, 1.0, 3.0), strict=True):
        pm.add_agent(agent, weight)
    obs = np.random.default_rng(1).normal(size=(32, 4))
    vote = EnsembleAgent(pm, carts[0]).act(obs, deterministic=True)
    # The weight-3 member outvotes the two others together.
    np.testing.assert_array_equal(vote, carts[2].act(obs, deterministic=True))


def test_learning_and_checkpoints_are_the_primarys(tmp_path):
    primary = make_agent("cem", "CartPole-v1", seed=0)
    other = make_agent("cem", "CartPole-v1", seed=1)
    pm = PolicyManager(max_ensemble_size=1)
    pm.add_agent(other, score=100.0)
    agent = EnsembleAgent(pm, primary)
    assert primary in pm and pm.members[1].pinned  # joined, and never pruned
    assert pm.prune() == [other]

    agent.set_hyperparams(HyperparamSet({"noise_std": 0.2}))
    assert primary.get_hyperparams().params["noise_std"] == 0.2
    assert agent.get_hyperparams().params == primary.get_hyperparams().params
    obs = np.zeros((2, 4))
    actions, info = agent.act_info(obs, np.ones(2, dtype=bool))
    assert actions.shape == (2,) and info["params"].shape == (2, primary.mean.size)
    assert agent.is_on_policy == primary.is_on_policy
    primary.mean[:] = 1.0
    agent.save_weights(str(tmp_path / "w"))
    primary.mean[:] = 0.0
    agent.load_weights(str(tmp_path / "w"))
    np.testing.assert_array_equal(primary.mean, 1.0)


def test_the_search_space_and_bounds_are_the_primarys():
    class Declares(Fixed):
        @property
        def search_space(self):
            return {"learning_rate": ("log_float", 1e-4, 3e-3)}

        @property
        def hyperparam_bounds(self):
            return {"learning_rate": Bound(0.0, 1.0, open_low=True)}

    primary, other = Declares([1, 2, 3]), Fixed([1, 2, 3])
    agent = ensemble((primary, 1.0), (other, 1.0))
    # What the loop's default SPSA tunes and what PolicyManager perturbs within.
    assert agent.search_space == {"learning_rate": ("log_float", 1e-4, 3e-3)}
    assert agent.hyperparam_bounds == {"learning_rate": Bound(0.0, 1.0, open_low=True)}
    assert ensemble((other, 1.0), (primary, 1.0)).search_space == {}  # the primary's only
    cem = make_agent("cem", "CartPole-v1", seed=0)
    assert EnsembleAgent(PolicyManager(), cem).hyperparam_bounds == cem.hyperparam_bounds != {}


def test_an_ensemble_trains_its_primary_in_a_loop():
    primary = make_agent("cem", "CartPole-v1", seed=0)
    frozen = make_agent("cem", "CartPole-v1", seed=1)
    learned: list[BaseAgent] = []
    for member in (primary, frozen):
        learn = member.learn
        member.learn = lambda data, member=member, learn=learn: (
            learned.append(member) or learn(data)
        )
    pm = PolicyManager()
    pm.add_agent(frozen)
    agent = EnsembleAgent(pm, primary)
    pipe = VectorBatchPipeline(env_id="CartPole-v1", n_envs=4, window_size=100, seed=0)
    val = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=50, seed=1, deterministic=True
    )
    report = RLOptimizer(agent, pipe, val_pipeline=val, max_episodes=6).run()
    assert report.episodes == 6 and report.val_score is not None
    assert learned == [primary] * 6


def test_teardown_releases_every_member():
    torn: list = []
    a, b = Fixed([1, 2, 3]), Fixed([1, 2, 3])
    for agent in (a, b):
        agent.teardown = lambda agent=agent: torn.append(agent)
    ens = ensemble((a, 1.0), (b, 1.0))
    ens.teardown()
    assert torn == [a, b] and ens.policy_manager.ensemble_size == 0
