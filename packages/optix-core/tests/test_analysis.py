"""RegimeDetector's detrended volatility and DiagnosticController's aggregation and rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optix_core.analysis import AnalysisConfigError, DiagnosticController, RegimeDetector
from optix_core.types import EvalMetrics, HyperparamSet


def test_a_steady_climb_is_trending_not_volatile():
    scores = np.linspace(10, 100, 10)  # raw CV ~0.5, but no scatter around the trend
    report = RegimeDetector().analyze(scores.tolist())
    assert report.regime == "trending"
    assert report.detrended_cv == pytest.approx(0.0, abs=1e-9)
    assert report.slope == pytest.approx(10.0)


def test_regimes_from_scatter_and_slope():
    rng = np.random.default_rng(0)
    detector = RegimeDetector(volatility_threshold=0.2, trend_threshold=0.05, window=20)
    assert detector.detect((100 + rng.normal(0, 1, 20)).tolist()) == "ranging"
    assert detector.detect((100 + rng.normal(0, 40, 20)).tolist()) == "volatile"
    falling = detector.analyze(np.linspace(200, 50, 20).tolist())
    assert falling.regime == "trending" and falling.slope < 0
    assert detector.detect([1.0, 2.0]) == "ranging"  # too few to tell


def test_detector_reads_eval_metrics_and_only_the_window():
    history = [EvalMetrics(primary_score=s) for s in [1000.0, -500.0] + [50.0] * 5]
    report = RegimeDetector(window=5).analyze(history)
    assert report.n == 5 and report.regime == "ranging"
    with pytest.raises(AnalysisConfigError, match="window must be at least 3 scores, got 2"):
        RegimeDetector(window=2)


class Agent:
    """The two hyperparameter methods of BaseAgent, which is all the controller touches."""

    def __init__(self, **params):
        self.hp = HyperparamSet(params=params)

    def get_hyperparams(self) -> HyperparamSet:
        return self.hp.copy()

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        self.hp = hyperparams


def test_summary_aggregates_recent_windows_and_counts_nonfinite():
    ctl = DiagnosticController(window=4)
    for i, loss in enumerate([9.0, 1.0, 2.0, math.nan, 4.0]):
        ctl.record({"loss": loss, "entropy": 1.0 - 0.1 * i, "note": "text", "flag": True})
    summary = ctl.summary()
    assert set(summary) == {"loss", "entropy"}
    loss = summary["loss"]  # the last 4 windows: 1, 2, nan, 4
    assert (loss.count, loss.nonfinite) == (3, 1)
    assert loss.mean == pytest.approx(7 / 3) and loss.min == 1 and loss.max == 4 and loss.last == 4
    assert summary["entropy"].slope == pytest.approx(-0.1)
    assert ctl.windows_seen == 5


def test_rules_fire_and_change_one_hyperparameter_each():
    agent = Agent(learning_rate=1e-3, entropy_coef=0.01, epsilon_min=0.05)
    ctl = DiagnosticController(min_episodes=3, epsilon_patience=2)
    for i in range(3):
        assert ctl.step(i, agent, {"loss": 1.0, "entropy": 1.0}) == []
    fired = ctl.step(3, agent, {"loss": 50.0, "entropy": 0.01})
    assert [rule for rule, _ in fired] == ["LOSS_SPIKE", "ENTROPY_COLLAPSE"]
    assert agent.hp.params["learning_rate"] == pytest.approx(5e-4)
    assert agent.hp.params["entropy_coef"] == pytest.approx(0.02)
    fired = ctl.step(4, agent, {"loss": 1.0, "approx_kl": 0.5})
    assert [rule for rule, _ in fired] == ["KL_TOO_HIGH"]
    assert agent.hp.params["learning_rate"] == pytest.approx(2.5e-4)
    ctl.step(5, agent, {"epsilon": 0.05, "score": 9.0})
    fired = ctl.step(6, agent, {"epsilon": 0.05, "score": 9.0})
    assert [rule for rule, _ in fired] == ["EPSILON_RESET"]
    assert agent.hp.params["epsilon"] == pytest.approx(0.3)
    assert [f[:2] for f in ctl.firings] == [
        (3, "LOSS_SPIKE"),
        (3, "ENTROPY_COLLAPSE"),
        (4, "KL_TOO_HIGH"),
        (6, "EPSILON_RESET"),
    ]


def test_epsilon_is_left_alone_when_the_score_is_good():
    agent = Agent(epsilon_min=0.05)
    ctl = DiagnosticController(min_episodes=1, epsilon_patience=2)
    for i in range(5):
        assert ctl.step(i, agent, {"epsilon": 0.05, "score": 500.0}) == []
    assert "epsilon" not in agent.hp.params
