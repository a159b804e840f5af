"""MetaController: each rule of its decision list, on scripted score histories."""

from __future__ import annotations

import math

import pytest

from optix_core.evolution import MetaAction, MetaController, ScoreHistory
from optix_core.types import EvalMetrics


def history(train: list[float], val: list[float] | None = None) -> ScoreHistory:
    h = ScoreHistory()
    for i, t in enumerate(train):
        h.append(t, None if val is None else val[i])
    return h


FLAT_VAL = [100.0] * 6


def gapped(gaps: list[float], val: list[float] | None = None) -> ScoreHistory:
    """A history whose relative gaps (train − val) / |val| are ``gaps``."""
    val = val or [100.0] * len(gaps)
    return history([v * (1 + g) for v, g in zip(val, gaps, strict=True)], val)


def test_stop_when_the_budget_is_spent_whatever_the_signals():
    meta = MetaController()
    for h in (history([1.0]), gapped([0.9] * 6), history([1, 2, 3, 4, 5.0])):
        assert meta.decide(h, spawns_left=0) is MetaAction.STOP
    assert meta.decide(history([100.0] * 4), spawns_left=None) is MetaAction.SPAWN


def test_no_op_on_too_little_evidence():
    meta = MetaController(min_history=4)
    assert meta.decide(gapped([0.9] * 3), spawns_left=2) is MetaAction.NO_OP
    assert meta.decide(gapped([0.9] * 4), spawns_left=2) is MetaAction.PRUNE


def test_prune_on_a_high_gap_level():
    meta = MetaController(gap_threshold=0.3)
    assert meta.decide(gapped([0.5] * 6)) is MetaAction.PRUNE
    signals = meta.signals(gapped([0.5] * 6))
    assert signals.gap_level == pytest.approx(0.5) and signals.gap_slope == pytest.approx(0.0)


def test_the_gap_level_threshold_is_strict():
    # (130 − 100) / 100 = 0.3 exactly: not above, so the flat val spawns.
    at = history([130.0] * 6, FLAT_VAL)
    assert MetaController(gap_threshold=0.3).decide(at) is MetaAction.SPAWN
    assert MetaController(gap_threshold=0.29).decide(at) is MetaAction.PRUNE


def test_prune_on_a_widening_gap_before_its_level_is_high():
    widening = gapped([0.0, 0.03, 0.06, 0.09, 0.12, 0.15])  # slope 0.03, mean 0.075
    meta = MetaController(gap_threshold=0.3, gap_slope_threshold=0.02)
    assert meta.signals(widening).gap_slope == pytest.approx(0.03)
    assert meta.decide(widening) is MetaAction.PRUNE
    assert MetaController(gap_slope_threshold=0.031).decide(widening) is MetaAction.SPAWN
    narrowing = gapped([0.15, 0.12, 0.09, 0.06, 0.03, 0.0])
    assert meta.decide(narrowing) is MetaAction.SPAWN


def test_overfitting_with_nothing_to_prune_falls_through():
    meta = MetaController()
    assert meta.decide(gapped([0.9] * 6), prunable=0) is MetaAction.SPAWN
    rising = [100.0, 110.0, 120.0, 130.0, 140.0, 150.0]
    assert meta.decide(gapped([0.9] * 6, rising), prunable=0) is MetaAction.NO_OP
    assert meta.decide(gapped([0.9] * 6), prunable=1) is MetaAction.PRUNE


def test_spawn_on_a_plateau_no_op_while_still_improving():
    rising = [100.0, 110.0, 120.0, 130.0]  # slope 10 / mean 115 ≈ 0.087 per evaluation
    slow = [100.0, 104.0, 108.0, 112.0]  # slope 4 / mean 106 ≈ 0.038
    meta = MetaController(improvement_threshold=0.05)
    assert meta.decide(history(rising, rising)) is MetaAction.NO_OP
    assert meta.decide(history(slow, slow)) is MetaAction.SPAWN
    assert meta.signals(history(slow, slow)).improvement_rate == pytest.approx(4 / 106)
    assert MetaController(improvement_threshold=0.03).decide(history(slow, slow)) is (
        MetaAction.NO_OP
    )
    assert meta.decide(history(rising[::-1], rising[::-1])) is MetaAction.SPAWN


def test_improvement_is_relative_to_the_scores_magnitude():
    # The same run shifted below zero (a LunarLander-like reward) reads the same.
    negative = [-130.0, -120.0, -110.0, -100.0]
    assert MetaController().decide(history(negative, negative)) is MetaAction.NO_OP


def test_without_validation_only_the_train_trend_counts():
    meta = MetaController()
    assert meta.signals(history([100.0] * 5)).gap_level is None
    assert meta.decide(history([100.0] * 5)) is MetaAction.SPAWN
    assert meta.decide(history([100.0, 120.0, 140.0, 160.0])) is MetaAction.NO_OP


def test_only_the_last_window_counts():
    old_overfit = [0.9] * 10 + [0.0] * 5
    assert MetaController(window=5).decide(gapped(old_overfit)) is MetaAction.SPAWN
    assert MetaController(window=15).decide(gapped(old_overfit)) is MetaAction.PRUNE


def test_history_from_loop_metrics():
    evaluated = [
        EvalMetrics(primary_score=10.0, generalization_gap=5.0),  # val 10, train 15
        EvalMetrics(primary_score=12.0, generalization_gap=6.0),
    ]
    h = ScoreHistory.from_metrics(evaluated)
    assert h.has_validation
    assert h.train.tolist() == [15.0, 18.0] and h.val.tolist() == [10.0, 12.0]
    h.record(EvalMetrics(primary_score=11.0))  # an evaluation without validation
    assert not h.has_validation and h.val is None
    assert h.primary.tolist() == [15.0, 18.0, 11.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_history": 1}, "min_history"),
        ({"window": 2, "min_history": 3}, "window"),
        ({"gap_threshold": math.nan}, "gap_threshold"),
        ({"improvement_threshold": math.inf}, "improvement_threshold"),
    ],
)
def test_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MetaController(**kwargs)
