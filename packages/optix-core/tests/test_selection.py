"""Checkpoint selection: who becomes the best, and what it costs."""

from __future__ import annotations

import math

import gymnasium as gym

from optix_core.algorithms.cem import CEMAgent
from optix_core.scheduler import BackoffScheduler
from optix_core.selection import Candidate, EvaluationSelection, TrainingScoreSelection
from optix_core.types import EvalMetrics


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
