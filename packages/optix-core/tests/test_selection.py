"""Checkpoint selection: who becomes the best, and what it costs."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from optix_core.algorithms.cem import CEMAgent
from optix_core.evaluation import PolicyEvaluation, evaluate_policy
from optix_core.scheduler import BackoffScheduler
from optix_core.selection import Candidate, EvaluationSelection, Runoff, TrainingScoreSelection
from optix_core.types import EvalMetrics


class SeededLength(gym.Env):
    """Scores one point a step for ``1 + seed % 5`` steps: the return names the seed."""

    observation_space = gym.spaces.Box(-1, 1, (4,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = 1 + (seed % 5 if seed is not None else int(self.np_random.integers(5)))
        return np.zeros(4, dtype=np.float32), {}

    def step(self, action):
        self.left -= 1
        return np.zeros(4, dtype=np.float32), 1.0, self.left == 0, False, {}


def test_a_higher_score_wins_and_a_lower_one_outside_the_noise_loses():
    selection = EvaluationSelection("CartPole-v1")
    first = Candidate(1, 100.0, 90.0, 5, 1.0)
    assert selection.beats(first, None)
    assert selection.beats(Candidate(2, 101.0, 95.0, 5, 1.0), first)
    assert not selection.beats(Candidate(3, 97.0, 96.0, 5, 1.0), first)


def test_a_tie_within_one_standard_error_of_the_peak_goes_to_the_later_policy():
    selection = EvaluationSelection("Acrobot-v1")
    lucky = Candidate(13, -76.0, -90.0, 5, 4.0)  # an early policy, lucky on five episodes
    assert selection.beats(lucky, None)
    later = Candidate(40, -80.0, -80.0, 5, 3.0)  # within hypot(4, 3) = 5 of the peak
    assert selection.beats(later, lucky)
    # Ties are measured against the peak, not the current best: no downward drift.
    drifting = Candidate(50, -82.0, -80.0, 5, 0.5)  # within 5 of -80, not within 4.03 of -76
    assert not selection.beats(drifting, later)
    assert selection.peak is lucky


def test_exact_ties_go_to_the_later_policy_and_non_finite_scores_never_win():
    selection = EvaluationSelection("CartPole-v1")
    best = Candidate(8, 500.0, 232.0, 5)
    assert selection.beats(best, None)
    assert selection.beats(Candidate(17, 500.0, 500.0, 5), best)
    assert not selection.beats(Candidate(18, math.nan, 500.0, 5), best)


def test_selection_state_survives_a_resume():
    selection = EvaluationSelection("CartPole-v1")
    selection.beats(Candidate(3, 10.0, 9.0, 5, 1.0), None)
    selection.env_steps = 1234
    restored = EvaluationSelection("CartPole-v1")
    restored.load_state_dict(selection.state_dict())
    assert restored.env_steps == 1234 and restored.peak == selection.peak


def test_training_score_selection_needs_a_strictly_higher_score():
    selection = TrainingScoreSelection()
    best = Candidate(1, 5.0, 5.0)
    assert selection.beats(best, None)
    assert not selection.beats(Candidate(2, 5.0, 5.0), best)


def test_judging_stays_within_its_share_of_the_training_env_steps():
    """Every window of a plateau is a candidate; with max_share 0.25, judging
    (real episodes) is spread out so that it never runs ahead of a quarter of
    training by more than the one judgment that crossed the line."""
    agent = CEMAgent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), seed=0)
    selection = EvaluationSelection("CartPole-v1", 5, max_share=0.25, n_envs=5)
    scheduler = BackoffScheduler(max_interval_episodes=1)
    judged, costs = [], []
    for window in range(1, 41):
        steps = 64 * window
        decision = scheduler.record(window, 100.0)  # flat: every window a candidate
        before = selection.env_steps
        candidate = selection.judge(
            agent, window, EvalMetrics(100.0, {"env_steps": steps}), decision
        )
        if candidate is not None:
            judged.append(window)
            costs.append(selection.env_steps - before)
            assert before <= 0.25 * steps  # judged only while within the share
        else:
            assert selection.env_steps > 0.25 * steps  # skipped only when over it
    assert judged[0] == 1 and 1 < len(judged) < 40
    assert selection.env_steps <= 0.25 * 64 * 40 + max(costs)
    unlimited = EvaluationSelection("CartPole-v1", 5, n_envs=5)
    decision = BackoffScheduler().record(1, 100.0)
    for window in range(1, 4):
        assert unlimited.judge(agent, window, EvalMetrics(100.0, {"env_steps": 1.0}), decision)


def test_evaluation_returns_are_ordered_by_the_episode_played_not_by_when_it_ended():
    """Pairwise comparison of two policies needs episode i to be the same start
    for both; completion order would sort short episodes first."""
    agent = CEMAgent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), seed=0)
    result = evaluate_policy(agent, SeededLength, episodes=4, n_envs=4, seed=3)
    assert result.returns.tolist() == [4.0, 5.0, 1.0, 2.0]  # environment i seeded 3 + i
    assert result.lengths.tolist() == [4, 5, 1, 2]


class EndlessWhenOdd(gym.Env):
    """One point a step; an episode seeded odd never ends (no time limit), any
    other ends after 3 steps."""

    observation_space = gym.spaces.Box(-1, 1, (4,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.endless = seed is not None and seed % 2 == 1
        self.t = 0
        return np.zeros(4, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(4, dtype=np.float32), 1.0, not self.endless and self.t == 3, False, {}


def test_an_episode_that_never_ends_is_cut_and_counts_what_it_gathered(caplog):
    agent = CEMAgent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), seed=0)
    result = evaluate_policy(agent, EndlessWhenOdd, episodes=4, n_envs=2, max_episode_steps=50)
    assert result.returns.tolist() == [3.0, 3.0, 50.0, 3.0]  # environment 1 seeded 1, reset
    assert result.lengths.tolist() == [3, 3, 50, 3]
    assert "cut 1 episode(s) at 50 steps" in caplog.text


def test_every_candidate_plays_the_same_episodes():
    agent = CEMAgent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), seed=0)
    selection = EvaluationSelection("CartPole-v1", 5, n_envs=5)
    decision = BackoffScheduler().record(1, 100.0)
    first, later = (
        selection.judge(agent, window, EvalMetrics(100.0, {"env_steps": 1.0}), decision)
        for window in (1, 7)
    )
    assert len(set(first.returns)) > 1  # five different starts ...
    assert later.returns == first.returns  # ... the same five for every window


def test_candidates_on_the_same_episodes_compare_by_their_paired_differences():
    """Pendulum-like: the start spreads every policy's return widely, but the
    later policy is 2 worse on every start. Judged apart (one standard error
    each) that is a tie the later policy would take; paired it is a loss."""
    starts = np.array([-100.0, -250.0, -150.0, -120.0, -200.0])
    selection = EvaluationSelection("Pendulum-v1")
    peak = Candidate(10, starts.mean(), 0.0, 5, starts.std() / 5**0.5, starts.tolist())
    assert selection.beats(peak, None)
    worse = Candidate(20, starts.mean() - 2, 0.0, 5, starts.std() / 5**0.5, (starts - 2).tolist())
    assert not selection.beats(worse, peak)
    assert selection.beats(
        Candidate(
            30, starts.mean() - 2, 0.0, 5, 0.0, (starts + np.array([-12.0, 8, -4, 2, -4])).tolist()
        ),
        peak,
    )  # the same mean loss, but within the differences' own standard error (3.0)
    better = Candidate(40, starts.mean() + 2, 0.0, 5, starts.std() / 5**0.5, (starts + 2).tolist())
    assert selection.clearly_beats(better, peak)
    assert not selection.clearly_beats(better, Candidate(9, starts.mean(), 0.0, 5, 40.0))


def evaluation(*returns: float, length: int = 100) -> PolicyEvaluation:
    return PolicyEvaluation(np.array(returns), np.full(len(returns), length))


def test_a_runoff_goes_on_while_undecided_cheap_and_short():
    selection = EvaluationSelection("Acrobot-v1", 5)
    alike = Runoff(3, 9, evaluation(-80.0, -90.0), evaluation(-80.0, -90.0))
    assert alike.decided and not selection.runoff_goes_on(alike, 10**9)
    apart = Runoff(3, 9, evaluation(-200.0, -210.0, -190.0), evaluation(-80.0, -91.0, -79.0))
    assert apart.decided and apart.final_wins
    # one failed start in ten: nine like its rival's, so within the noise
    tail = Runoff(3, 9, evaluation(*[-80.0] * 9, -500.0), evaluation(*[-82.0] * 10))
    assert not tail.decided and tail.final_wins
    assert selection.runoff_goes_on(tail, training_env_steps=20_000)  # 2,000 of 20,000
    assert not selection.runoff_goes_on(tail, training_env_steps=19_999)
    longer = tail.extend(tail.best, tail.final).extend(tail.best, tail.final)
    assert longer.rounds == 3 and len(longer.best.returns) == 30
    assert selection.runoff_goes_on(longer, 10**9)
    assert not selection.runoff_goes_on(longer.extend(tail.best, tail.final), 10**9)


class SeedReturn(gym.Env):
    """One step whose reward is the seed the episode was reset with."""

    observation_space = gym.spaces.Box(-1, 1, (4,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seed_ = seed
        return np.zeros(4, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(4, dtype=np.float32), float(self.seed_), True, False, {}


def test_each_runoff_round_plays_its_own_episodes_seeded_apart_from_judging():
    agent = CEMAgent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), seed=0)
    selection = EvaluationSelection(SeedReturn, 2, n_envs=4)
    assert selection.runoff_episodes == 4  # twice the judging's episodes
    rounds = [selection.runoff(agent, number).returns.tolist() for number in (0, 1)]
    assert rounds == [
        [3_000_000.0 + i for i in range(4)],
        [3_010_000.0 + i for i in range(4)],
    ]
    assert selection.env_steps == 8
    judged = selection.judge(agent, 1, EvalMetrics(1.0, {}), BackoffScheduler().record(1, 1.0))
    assert judged.returns == [1_000_000.0, 1_000_001.0]
