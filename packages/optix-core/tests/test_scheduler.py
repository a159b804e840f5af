"""BackoffScheduler: evaluation backoff, plateau and convergence detection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optix_core.scheduler import BackoffScheduler
from optix_core.types import LoopState


def exact(**kwargs) -> BackoffScheduler:
    """A scheduler that compares raw scores with no noise margin."""
    options = {"score_smoothing": 1, "noise_k": 0.0, **kwargs}
    return BackoffScheduler(**options)


def feed(scheduler: BackoffScheduler, scores, start: int = 1):
    """Record each score at the episode the scheduler asks for; return the decisions."""
    episode = max(start, scheduler.next_eval_episode)
    decisions = []
    for score in scores:
        assert scheduler.should_evaluate(episode)
        decisions.append(scheduler.record(episode, score))
        episode = scheduler.next_eval_episode
    return decisions


def test_first_finite_score_is_an_improvement():
    scheduler = exact()
    decision = scheduler.record(1, -500.0)
    assert decision.improved
    assert decision.state is LoopState.ACTIVE
    assert scheduler.best_smoothed == -500.0


def test_interval_doubles_on_each_non_improvement_up_to_the_maximum():
    scheduler = exact(base_interval=1, max_interval_episodes=8, plateau_threshold=10)
    decisions = feed(scheduler, [10.0] + [10.0] * 6)
    assert [d.interval for d in decisions] == [1, 2, 4, 8, 8, 8, 8]
    assert [d.improved for d in decisions] == [True] + [False] * 6


def test_next_evaluation_is_interval_episodes_after_this_one():
    scheduler = exact(base_interval=3, max_interval_episodes=24, plateau_threshold=10)
    assert not scheduler.should_evaluate(2)
    assert scheduler.should_evaluate(3)
    scheduler.record(3, 1.0)  # improved: interval stays 3
    assert scheduler.next_eval_episode == 6
    scheduler.record(6, 1.0)  # not improved: 6
    assert scheduler.next_eval_episode == 12
    assert not scheduler.should_evaluate(11)
    scheduler.record(12, 0.5)  # not improved: 12
    assert scheduler.next_eval_episode == 24
    scheduler.record(24, 0.5)  # capped at 24
    assert scheduler.next_eval_episode == 48


def test_improvement_resets_interval_to_base_and_state_to_active():
    scheduler = exact(base_interval=2, max_interval_episodes=64, plateau_threshold=3)
    decisions = feed(scheduler, [1.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    assert decisions[-2].state is LoopState.COOLING
    assert decisions[-2].interval == 32
    assert decisions[-1].improved
    assert decisions[-1].interval == 2
    assert decisions[-1].state is LoopState.ACTIVE
    assert scheduler.consecutive_no_improvement == 0


def test_cooling_after_plateau_threshold_and_dormant_after_dormant_threshold():
    scheduler = exact(plateau_threshold=3, dormant_threshold=6, max_interval_episodes=4)
    decisions = feed(scheduler, [5.0] + [5.0] * 6)
    states = [d.state for d in decisions]
    A, C, D = LoopState.ACTIVE, LoopState.COOLING, LoopState.DORMANT
    assert states == [A, A, A, C, C, C, D]
    assert [d.entered_cooling for d in decisions] == [False] * 3 + [True] + [False] * 3
    assert [d.entered_dormant for d in decisions] == [False] * 6 + [True]


@pytest.mark.parametrize(
    ("scores", "nothing"),
    [
        ([], False),  # nothing scored yet
        ([-500.0] * 8, True),  # Acrobot that never reached the goal
        ([-500.0] * 4 + [-499.0] + [-500.0] * 3, False),  # one episode did, once
        ([5.0, 4.0, 3.0, 3.0], False),  # got worse: it moved
    ],
)
def test_a_score_that_never_rose_is_a_run_that_learned_nothing(scores, nothing):
    scheduler = exact()
    feed(scheduler, scores)
    assert scheduler.learned_nothing is nothing


def test_plateau_counts_non_improvements_in_a_row_only():
    scheduler = exact(plateau_threshold=3, dormant_threshold=4)
    # Two misses, an improvement, two misses: never three in a row.
    decisions = feed(scheduler, [1.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    assert all(d.state is LoopState.ACTIVE for d in decisions)


def test_not_dormant_before_min_episodes_before_dormant_evaluations():
    scheduler = exact(plateau_threshold=2, dormant_threshold=3, min_episodes_before_dormant=8)
    decisions = feed(scheduler, [1.0] * 10)
    states = [d.state for d in decisions]
    # Three misses in a row after the first evaluation (n_evaluations == 4) would
    # be DORMANT; the minimum holds it in COOLING until the 8th evaluation.
    assert states[:7] == [LoopState.ACTIVE] * 2 + [LoopState.COOLING] * 5
    assert states[7] is LoopState.DORMANT
    assert decisions[7].entered_dormant
    assert scheduler.n_evaluations == 10


def test_relative_patience_waits_in_proportion_to_the_windows_to_the_record():
    """A run that took 20 windows to its record waits 10 more (ratio 0.5) before
    DORMANT, however early its 3 evaluations without improvement were counted."""
    options = dict(plateau_threshold=2, dormant_threshold=3, max_interval_episodes=1)
    climb_then_flat = [float(s) for s in range(1, 21)] + [20.0] * 15
    plain = [d.state for d in feed(exact(**options), climb_then_flat)]
    assert plain.index(LoopState.DORMANT) + 1 == 23
    patient = feed(exact(relative_patience=0.5, **options), climb_then_flat)
    states = [d.state for d in patient]
    assert states.index(LoopState.DORMANT) + 1 == 30  # 20 + 0.5 * 20
    assert set(states[22:29]) == {LoopState.COOLING}
    assert patient[29].entered_dormant


def test_an_unsolved_task_holds_dormant_for_unsolved_patience():
    """The same climb and plateau: solved, DORMANT comes 0.5 x 20 windows after the
    record at window 20; unsolved, 3 x 20. unsolved_patience never shortens a
    longer relative patience."""
    options = dict(plateau_threshold=2, dormant_threshold=3, max_interval_episodes=1)
    climb_then_flat = [float(s) for s in range(1, 21)] + [20.0] * 90

    def dormant_at(solved: bool, relative_patience: float = 0.5) -> int:
        scheduler = exact(relative_patience=relative_patience, unsolved_patience=3.0, **options)
        states = [scheduler.record(w, s, solved).state for w, s in enumerate(climb_then_flat, 1)]
        return states.index(LoopState.DORMANT) + 1

    assert dormant_at(solved=True) == 30
    assert dormant_at(solved=False) == 80
    assert dormant_at(solved=False, relative_patience=4.0) == 100


def test_no_dormant_while_the_agent_explores_and_patience_counts_from_its_end():
    """A flat score from the first window (MountainCar's -200) with the agent
    exploring to window 40: no DORMANT meanwhile, whatever the plateau's length;
    after, the patience counts from window 40 as from a record there (3 x 40
    unsolved). A record after exploration counts from the record, as before."""
    options = dict(plateau_threshold=2, dormant_threshold=3, max_interval_episodes=1)

    def dormant_at(scores: list[float], explored_to: int, solved: bool = False) -> int:
        scheduler = exact(relative_patience=0.5, unsolved_patience=3.0, **options)
        states = [
            scheduler.record(w, s, solved, exploring=w <= explored_to).state
            for w, s in enumerate(scores, 1)
        ]
        assert LoopState.DORMANT not in states[:explored_to]
        return states.index(LoopState.DORMANT) + 1

    flat = [-200.0] * 400
    assert dormant_at(flat, explored_to=0) == 4  # the plateau alone: 3 evaluations
    assert dormant_at(flat, explored_to=40) == 160  # 40 + 3 x 40
    assert dormant_at(flat, explored_to=40, solved=True) == 60  # 40 + 0.5 x 40
    plain = exact(**options)  # tensor-optix's test alone: held only while exploring
    states = [plain.record(w, -200.0, exploring=w <= 40).state for w in range(1, 61)]
    assert states.index(LoopState.DORMANT) + 1 == 41
    climb_after = [-200.0] * 50 + [-200.0 + s for s in range(1, 51)] + [-150.0] * 300
    assert dormant_at(climb_after, explored_to=40) == 400  # record at 100: 100 + 3 x 100


def test_the_end_of_exploration_survives_a_checkpoint():
    """Exploring to window 20, flat, checkpointed at 25: the resumed scheduler
    still waits 0.5 x 20 windows from window 20, DORMANT at 30."""
    options = dict(relative_patience=0.5, plateau_threshold=2, dormant_threshold=3)
    scheduler = exact(**options)
    for window in range(1, 26):
        scheduler.record(window, -200.0, exploring=window <= 20)
    restored = exact(**options)
    restored.load_state_dict(json.loads(json.dumps(scheduler.state_dict())))
    assert restored.patience_from == 20
    states = [restored.record(w, -200.0).state for w in range(26, 31)]
    assert states == [LoopState.COOLING] * 4 + [LoopState.DORMANT]


def test_records_inside_the_noise_margin_postpone_dormant():
    """A curve creeping up by less than the margin is credited nothing, but each
    record moves the patience on; once flat, DORMANT follows."""
    options = dict(
        plateau_threshold=2,
        dormant_threshold=3,
        max_interval_episodes=1,
        improvement_margin=5.0,
        relative_patience=0.5,
    )
    creeping = [10.0 + 0.05 * i for i in range(60)]
    decisions = feed(exact(**options), creeping + [creeping[-1]] * 40)
    states = [d.state for d in decisions]
    assert not any(d.improved for d in decisions[1:])  # never past the margin
    assert LoopState.DORMANT not in states[:60]
    assert states.index(LoopState.DORMANT) + 1 == 90  # record at 60, then 0.5 * 60


def test_a_record_must_add_its_share_of_what_the_run_has_learned():
    """From 0 to 100 in 10 windows, then creeping by 0.1 a window: every creep is
    a record and holds DORMANT off, unless a record must add 2% of the 100 learned."""
    options = dict(
        plateau_threshold=2,
        dormant_threshold=3,
        max_interval_episodes=1,
        improvement_margin=50.0,  # no improvement is credited after the climb
        relative_patience=0.5,
    )
    learned_then_creeping = [10.0 * i for i in range(11)] + [100.0 + 0.1 * i for i in range(1, 41)]
    creeping = [d.state for d in feed(exact(**options), learned_then_creeping)]
    assert LoopState.DORMANT not in creeping
    gained = [d.state for d in feed(exact(record_gain=0.02, **options), learned_then_creeping)]
    assert gained.index(LoopState.DORMANT) + 1 == 17  # the record at window 11, + 0.5 x 11


def test_smoothed_score_is_the_mean_of_the_last_score_smoothing_raw_scores():
    scheduler = BackoffScheduler(score_smoothing=3, noise_k=0.0, plateau_threshold=10)
    raw = [10.0, 40.0, 10.0, 70.0, 0.0]
    decisions = feed(scheduler, raw)
    expected = [10.0, 25.0, 20.0, 40.0, 80.0 / 3]
    assert [d.smoothed for d in decisions] == pytest.approx(expected)
    # What is compared is the smoothed score: 20 < best 25 is no improvement even
    # though the raw 10 equals the first, and 40 > 25 is one.
    assert [d.improved for d in decisions] == [True, True, False, True, False]
    assert scheduler.best_smoothed == pytest.approx(40.0)


def test_a_single_spike_is_diluted_by_smoothing():
    scheduler = BackoffScheduler(
        score_smoothing=4, noise_k=0.0, improvement_margin=10.0, plateau_threshold=10
    )
    feed(scheduler, [100.0, 100.0, 100.0, 100.0])
    decision = scheduler.record(scheduler.next_eval_episode, 130.0)  # raw +30, smoothed +7.5
    assert decision.smoothed == pytest.approx(107.5)
    assert not decision.improved


def test_improvement_margin_is_a_floor():
    scheduler = exact(improvement_margin=5.0, plateau_threshold=10)
    decisions = feed(scheduler, [100.0, 104.0, 105.0, 105.5, 110.0])
    assert [d.improved for d in decisions] == [True, False, False, True, False]
    assert all(d.margin == 5.0 for d in decisions)


def test_steadily_rising_noisy_score_is_credited():
    """The deliberate deviation from tensor-optix: the noise is measured around
    the trend, so fast, steady learning is not mistaken for noise."""
    scheduler = BackoffScheduler(score_smoothing=1, noise_k=2.0, score_window=20)
    rng = np.random.default_rng(0)
    scores = 10.0 * np.arange(40) + rng.normal(0.0, 1.0, size=40)
    decisions = feed(scheduler, scores)
    assert all(d.improved for d in decisions)
    assert all(d.state is LoopState.ACTIVE for d in decisions)
    # The noise estimate is the ~1.0 scatter around the line, not the trend.
    assert 0.5 < scheduler.noise() < 1.5
    # tensor-optix's plain standard deviation of the same 20 scores is ~58,
    # a margin of ~116 that no 10-point step could clear.
    assert 2.0 * np.std(scores[-20:]) > 100.0


def test_gain_inside_the_noise_is_not_credited_and_one_above_it_is():
    rng = np.random.default_rng(1)
    scheduler = BackoffScheduler(
        score_smoothing=1,
        noise_k=2.0,
        score_window=20,
        plateau_threshold=100,
        dormant_threshold=100,
    )
    feed(scheduler, 50.0 + rng.normal(0.0, 5.0, size=20))
    margin = scheduler.effective_margin()
    assert margin == pytest.approx(2.0 * scheduler.noise())
    assert 5.0 < margin < 20.0  # two standard deviations of the ~5.0 noise
    best = scheduler.best_smoothed
    state = json.loads(json.dumps(scheduler.state_dict()))

    inside = scheduler.record(scheduler.next_eval_episode, best + 0.5 * margin)
    assert not inside.improved
    assert inside.margin == pytest.approx(margin)
    assert scheduler.best_smoothed == best

    above = BackoffScheduler(
        score_smoothing=1,
        noise_k=2.0,
        score_window=20,
        plateau_threshold=100,
        dormant_threshold=100,
    )
    above.load_state_dict(state)
    decision = above.record(above.next_eval_episode, best + 1.5 * margin)
    assert decision.improved
    assert above.best_smoothed == pytest.approx(best + 1.5 * margin)


def test_noise_needs_three_scores_and_uses_only_the_score_window():
    scheduler = BackoffScheduler(
        score_window=5, noise_k=1.0, plateau_threshold=50, dormant_threshold=50
    )
    feed(scheduler, [1.0, 100.0])
    assert scheduler.noise() == 0.0
    feed(scheduler, [7.0, 3.0, 5.0, 1.0, 9.0, 2.0, 8.0, 4.0])
    window = np.array([1.0, 9.0, 2.0, 8.0, 4.0])  # the last five raw scores
    t = np.arange(5.0)
    slope, intercept = np.polyfit(t, window, 1)
    residuals = window - (slope * t + intercept)
    assert scheduler.noise() == pytest.approx(np.sqrt(np.sum(residuals**2) / 3))


def test_nan_score_is_never_an_improvement():
    scheduler = exact(plateau_threshold=10)
    assert not scheduler.record(1, float("nan")).improved
    assert scheduler.best_smoothed == -np.inf
    assert scheduler.record(scheduler.next_eval_episode, 1.0).improved


def test_resume_after_dormant_goes_back_to_dense_evaluation():
    scheduler = exact(plateau_threshold=1, dormant_threshold=2, max_interval_episodes=16)
    decisions = feed(scheduler, [1.0, 1.0, 1.0])
    assert decisions[-1].state is LoopState.DORMANT
    scheduler.resume_after_dormant(40)
    assert scheduler.state is LoopState.ACTIVE
    assert scheduler.interval == scheduler.base_interval
    assert scheduler.next_eval_episode == 41
    assert scheduler.consecutive_no_improvement == 0


def test_state_dict_round_trip_gives_identical_future_decisions():
    options = {
        "score_smoothing": 3,
        "noise_k": 1.5,
        "score_window": 8,
        "plateau_threshold": 3,
        "dormant_threshold": 9,
        "max_interval_episodes": 16,
        "relative_patience": 0.5,
        "record_gain": 0.02,
    }
    rng = np.random.default_rng(2)
    past = np.cumsum(rng.normal(1.0, 3.0, size=15))
    future = past[-1] + rng.normal(0.0, 3.0, size=25)

    original = BackoffScheduler(**options)
    feed(original, past)
    state = json.loads(json.dumps(original.state_dict()))  # JSON-ready
    restored = BackoffScheduler(**options)
    restored.load_state_dict(state)
    assert restored.state_dict() == original.state_dict()

    assert feed(restored, future) == feed(original, future)
    assert restored.state_dict() == original.state_dict()


def test_state_dict_of_a_fresh_scheduler_round_trips():
    state = json.loads(json.dumps(BackoffScheduler().state_dict()))
    assert state["best_smoothed"] is None
    restored = BackoffScheduler()
    restored.load_state_dict(state)
    assert restored.best_smoothed == -np.inf
    assert restored.record(1, -1e9).improved


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_interval": 0},
        {"backoff_factor": 0.5},
        {"base_interval": 10, "max_interval_episodes": 5},
        {"plateau_threshold": 0},
        {"plateau_threshold": 5, "dormant_threshold": 4},
        {"score_smoothing": 0},
        {"improvement_margin": -1.0},
        {"noise_k": -0.1},
        {"score_window": 1},
        {"relative_patience": -0.1},
        {"record_gain": -0.1},
        {"unsolved_patience": -1.0},
    ],
)
def test_invalid_arguments_raise_value_error(kwargs):
    name = next(iter(kwargs)) if len(kwargs) == 1 else list(kwargs)[-1]
    with pytest.raises(ValueError, match=name):
        BackoffScheduler(**kwargs)
