"""The online optimizers, driven directly by scores from known functions of what they suggest."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from optix_core.algorithms.cem_config import SEARCH_SPACE
from optix_core.optimizers import (
    BackoffOptimizer,
    MomentumOptimizer,
    PBTOptimizer,
    SPSAOptimizer,
    bounds_from_search_space,
)
from optix_core.optimizers.bounds import BoundedOptimizer
from optix_core.search_space import parse_search_space, perturb_params
from optix_core.types import EvalMetrics, HyperparamSet

ALL = (SPSAOptimizer, MomentumOptimizer, BackoffOptimizer, PBTOptimizer)
Score = Callable[[dict], float]


def drive(opt: BoundedOptimizer, params: dict, score: Score, evaluations: int) -> list[dict]:
    """Play the loop: each suggestion is in force until the next evaluation scores it."""
    current = HyperparamSet(dict(params))
    suggested = []
    metrics = EvalMetrics(score(current.params))
    for _ in range(evaluations):
        current = opt.suggest(current, metrics)
        suggested.append(dict(current.params))
        metrics = EvalMetrics(score(current.params))
    return suggested


def unit(value: float, low: float, high: float, log: bool = False) -> float:
    """The optimizers' unit coordinate, written out independently of ParamSpace."""
    if log:
        return (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
    return (value - low) / (high - low)


# ---- construction ------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"param_bounds": {"x": (1.0, 1.0)}}, "low < high"),
        ({"param_bounds": {"x": (2.0, 1.0)}}, "greater than hi"),
        ({"param_bounds": {"x": (0.0, math.inf)}}, "finite"),
        ({"param_bounds": {"x": (math.nan, 1.0)}}, "finite"),
        ({"param_bounds": {"x": (0.0,)}}, r"\(low, high\) pair"),
        ({"param_bounds": {"x": (0.0, 1.0)}, "log_scale": ["x"]}, "needs lo > 0"),
        ({"param_bounds": {"x": (-1.0, 1.0)}, "log_scale": ["x"]}, "needs lo > 0"),
        ({"param_bounds": {"x": (True, 1.0)}}, "not a finite number"),
        ({"param_bounds": {3: (0.0, 1.0)}}, "hyperparameter names"),
        ({"param_bounds": {"x": (0.1, 1.0)}, "log_scale": ["y"]}, "'y', which is not in"),
        ({"param_bounds": {"x": (0.1, 1.0)}, "log_scale": "x"}, "list of names"),
        ({"param_bounds": {"learning_rate": (0.0, 0.1)}}, "log_scale=\\[\\]"),
    ],
)
def test_bad_bounds_are_refused_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (SPSAOptimizer, {"a": -0.1}, "a must be >= 0"),
        (SPSAOptimizer, {"c": 0.0}, "c must be > 0"),
        (SPSAOptimizer, {"c": 0.6}, "c must be <= 0.5"),
        (SPSAOptimizer, {"A": -1.0}, "A must be >= 0"),
        (SPSAOptimizer, {"a": math.inf}, "finite"),
        (MomentumOptimizer, {"beta": 1.0}, "beta must be < 1"),
        (MomentumOptimizer, {"beta": -0.5}, "beta must be >= 0"),
        (BackoffOptimizer, {"step": 0.0}, "step must be > 0"),
        (BackoffOptimizer, {"shrink": 1.0}, "shrink must be < 1"),
        (BackoffOptimizer, {"min_step": 0.5}, "min_step must be <= 0.1"),
        (PBTOptimizer, {"population_size": 1}, "population_size must be >= 2"),
        (PBTOptimizer, {"exploit_frac": 0.6}, "exploit_frac must be <= 0.5"),
        (PBTOptimizer, {"perturb_scale": -0.1}, "perturb_scale must be > 0"),
    ],
)
def test_bad_gains_are_refused_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls({"x": (0.0, 1.0)}, **kwargs)


def test_learning_rates_are_log_scale_by_default_and_on_request_only():
    assert SPSAOptimizer(
        {"learning_rate": (1e-5, 1e-2), "gamma": (0.9, 1.0)}
    ).space.log.tolist() == [
        True,
        False,
    ]
    assert not SPSAOptimizer({"learning_rate": (0.0, 0.1)}, log_scale=[]).space.log.any()
    assert SPSAOptimizer({"tau": (1e-3, 1.0)}, log_scale=["tau"]).space.log.all()


def test_from_search_space_reads_trial_orchestrator_specs():
    space = {
        "lr": ("log_float", 1e-4, 3e-3),
        "n_epochs": ("int", 3, 15),
        "batch": ("log_int", 32, 512),
        "act": ("categorical", "tanh", "relu"),
    }
    assert bounds_from_search_space(space) == (
        {"lr": (1e-4, 3e-3), "n_epochs": (3, 15), "batch": (32, 512)},
        ["lr", "batch"],
    )
    opt = PBTOptimizer.from_search_space(space, population_size=3, seed=0)
    assert opt.space.names == ("lr", "n_epochs", "batch")
    assert opt.space.log.tolist() == [True, False, True]
    assert opt.population_size == 3
    cem = SPSAOptimizer.from_search_space(SEARCH_SPACE)
    assert set(cem.space.names) == set(SEARCH_SPACE)
    assert bounds_from_search_space({}) == ({}, [])
    with pytest.raises(ValueError, match="unknown kind 'loguniform'"):
        bounds_from_search_space({"lr": ("loguniform", 1e-4, 1e-2)})
    with pytest.raises(ValueError, match="takes two bounds"):
        SPSAOptimizer.from_search_space({"lr": ("float", 1e-4)})


@pytest.mark.parametrize("cls", ALL)
def test_an_int_entry_is_tuned_on_the_integers_whatever_the_value_in_force(cls):
    # One parser: a search space's "int" kind means integers online as in a trial,
    # even when the agent holds the value as a float.
    space = {"n_epochs": ("int", 3, 15), "lr": ("log_float", 1e-4, 1e-2)}
    opt = cls.from_search_space(space, seed=0)
    suggested = drive(opt, {"n_epochs": 10.0, "lr": 1e-3}, lambda p: -abs(p["n_epochs"] - 6), 12)
    assert {type(p["n_epochs"]) for p in suggested} == {int}
    assert all(3 <= p["n_epochs"] <= 15 for p in suggested)


def test_pbt_explores_with_the_shared_perturbation_rule():
    space = {"lr": ("log_float", 1e-5, 1e-1), "clip": ("float", 0.1, 0.3), "n": ("int", 3, 15)}
    opt = PBTOptimizer.from_search_space(space, perturb_scale=0.2, seed=3)
    rng = np.random.default_rng(3)
    parsed = parse_search_space(space)
    params = {"lr": 1e-3, "clip": 0.2, "n": 10, "gamma": 0.99}
    for _ in range(20):
        expected = perturb_params(params, parsed, 0.2, rng, noise="uniform")
        assert opt.perturb(params) == expected


# ---- behaviour every optimizer shares -------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("bounds", [None, {}])
def test_without_bounds_nothing_is_tuned_and_nothing_probed(cls, bounds):
    opt = cls(bounds)
    current = HyperparamSet({"learning_rate": 3e-4, "n_epochs": 10}, episode_id=4)
    for score in (1.0, 5.0, -2.0, math.nan):
        proposed = opt.suggest(current, EvalMetrics(score))
        assert proposed.params == current.params
        assert proposed is not current
        assert not opt.is_probing


@pytest.mark.parametrize("cls", ALL)
def test_a_bounded_name_the_agent_lacks_is_a_clear_error(cls):
    opt = cls({"clip_ratio": (0.1, 0.3)})
    with pytest.raises(ValueError, match="tunes 'clip_ratio', but the agent has no such"):
        opt.suggest(HyperparamSet({"learning_rate": 3e-4}), EvalMetrics(0.0))
    with pytest.raises(ValueError, match="is not a number"):
        opt.suggest(HyperparamSet({"clip_ratio": "0.2"}), EvalMetrics(0.0))


@pytest.mark.parametrize("cls", ALL)
def test_suggestions_stay_in_bounds_keep_integers_and_leave_other_keys(cls):
    bounds = {"lr": (1e-5, 1e-2), "n_epochs": (3, 15), "clip": (0.1, 0.3)}
    opt = cls(bounds, log_scale=["lr"], seed=0)
    start = {"lr": 3e-4, "n_epochs": 10, "clip": 0.2, "gamma": 0.99, "net": "mlp"}
    rng = np.random.default_rng(0)
    for params in drive(opt, start, lambda p: float(rng.normal()), 90):
        assert params["gamma"] == 0.99 and params["net"] == "mlp"
        assert isinstance(params["n_epochs"], int) and 3 <= params["n_epochs"] <= 15
        for name, (low, high) in bounds.items():
            assert low <= params[name] <= high
        assert all(type(v) in (int, float, str) for v in params.values())


def _scripted(seed: int) -> Score:
    rng = np.random.default_rng(seed)
    return lambda p: -((p["lr"] - 3e-3) ** 2) * 1e5 - (p["n"] - 7) ** 2 + rng.normal(0, 0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: SPSAOptimizer({"lr": (1e-4, 1e-2), "n": (1, 20)}, ["lr"], seed=seed),
        lambda seed: MomentumOptimizer({"lr": (1e-4, 1e-2), "n": (1, 20)}, ["lr"], seed=seed),
        lambda seed: BackoffOptimizer({"lr": (1e-4, 1e-2), "n": (1, 20)}, ["lr"], seed=seed),
        lambda seed: PBTOptimizer({"lr": (1e-4, 1e-2), "n": (1, 20)}, ["lr"], seed=seed),
    ],
    ids=["spsa", "momentum", "backoff", "pbt"],
)
def test_state_dict_resumes_exactly(make):
    start = {"lr": 1e-3, "n": 3}
    original = make(1)
    score = _scripted(0)
    head = drive(original, start, score, 25)
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    resumed = make(99)  # another seed: everything must come from the state
    resumed.load_state_dict(state)
    assert resumed.is_probing == original.is_probing
    # Both continue from the last suggestion, scored alike, with the same noise.
    last = HyperparamSet(head[-1])
    tails = []
    for opt in (original, resumed):
        tail_score = _scripted(5)
        current, metrics, tail = last, EvalMetrics(tail_score(last.params)), []
        for _ in range(40):
            current = opt.suggest(current, metrics)
            tail.append((dict(current.params), opt.is_probing))
            metrics = EvalMetrics(tail_score(current.params))
        tails.append(tail)
    assert tails[0] == tails[1]
    assert len({json.dumps(p, sort_keys=True) for p, _ in tails[0]}) > 5  # it kept moving


@pytest.mark.parametrize("cls", ALL)
def test_a_state_for_other_parameters_is_refused(cls):
    opt = cls({"x": (0.0, 1.0)})
    drive(opt, {"x": 0.5}, lambda p: 0.0, 3)
    with pytest.raises(ValueError, match=r"this state tunes \['x'\]"):
        cls({"y": (0.0, 1.0)}).load_state_dict(opt.state_dict())


# ---- SPSA ----------------------------------------------------------------------------------


def test_spsa_gradient_estimate_is_unbiased_on_a_noisy_quadratic():
    bounds = {"u": (0.0, 1.0), "v": (-2.0, 6.0), "lr": (1e-5, 1e-1)}
    opt = SPSAOptimizer(bounds, log_scale=["lr"], a=0.0, c=0.1, seed=3)  # a=0: x stays put
    w = (1.0, 2.0, 0.5)
    x_star = (0.8, 0.1, 0.5)
    draws = 10_000
    noise = iter(np.random.default_rng(4).normal(0.0, 0.05, 2 * draws).tolist())

    def score(p: dict) -> float:  # f(x) = −Σ wᵢ(xᵢ − x*ᵢ)² + ε, in the unit coordinates
        x = (unit(p["u"], 0, 1), unit(p["v"], -2, 6), unit(p["lr"], 1e-5, 1e-1, log=True))
        return -sum(wi * (xi - si) ** 2 for wi, xi, si in zip(w, x, x_star, strict=True)) + next(
            noise
        )

    true_gradient = -2.0 * np.array(w) * (np.array([0.4, 0.5, 0.5]) - np.array(x_star))
    estimates = np.empty((draws, 3))
    current = HyperparamSet({"u": 0.4, "v": 2.0, "lr": 1e-3})
    for i in range(draws):
        plus = opt.suggest(current, EvalMetrics(0.0))
        minus = opt.suggest(plus, EvalMetrics(score(plus.params)))
        current = opt.suggest(minus, EvalMetrics(score(minus.params)))
        assert opt.last_gradient is not None
        estimates[i] = [opt.last_gradient[n] for n in bounds]
    mean = estimates.mean(axis=0)
    stderr = estimates.std(axis=0, ddof=1) / math.sqrt(draws)
    assert np.all(np.abs(mean - true_gradient) < 4 * stderr), (mean, true_gradient, stderr)
    assert np.all(stderr < 0.03)  # sharp enough to see a bias of a few percent


def test_spsa_probes_are_symmetric_in_unit_space_and_flagged():
    opt = SPSAOptimizer({"lr": (1e-5, 1e-1), "clip": (0.1, 0.3)}, seed=0)
    current = HyperparamSet({"lr": 1e-3, "clip": 0.2})
    assert not opt.is_probing
    plus = opt.suggest(current, EvalMetrics(1.0))
    assert opt.is_probing
    minus = opt.suggest(plus, EvalMetrics(2.0))
    assert opt.is_probing
    centre = opt.suggest(minus, EvalMetrics(3.0))
    assert not opt.is_probing
    # Log-scale: the probes are a factor apart on either side, θ⁺·θ⁻ = θ²; linear: θ⁺ + θ⁻ = 2θ.
    assert plus.params["lr"] * minus.params["lr"] == pytest.approx(1e-3**2)
    assert plus.params["clip"] + minus.params["clip"] == pytest.approx(0.4)
    ratio = plus.params["lr"] / 1e-3
    assert ratio == pytest.approx(10 ** (0.1 * 4)) or ratio == pytest.approx(10 ** (-0.1 * 4))
    # f⁻ > f⁺: the centre moved away from the plus probe, by a = 0.05 unit per coordinate.
    x_plus = unit(plus.params["clip"], 0.1, 0.3)
    x_centre = unit(centre.params["clip"], 0.1, 0.3)
    assert x_centre - 0.5 == pytest.approx(-0.05 * np.sign(x_plus - 0.5))


def test_spsa_probes_stay_inside_the_box_at_its_edge():
    opt = SPSAOptimizer({"x": (0.0, 1.0)}, c=0.2, seed=0)
    current = HyperparamSet({"x": 1.0})
    plus = opt.suggest(current, EvalMetrics(0.0))
    minus = opt.suggest(plus, EvalMetrics(0.0))
    assert sorted([plus.params["x"], minus.params["x"]]) == pytest.approx([0.6, 1.0])


@pytest.mark.parametrize("seed", range(5))
def test_spsa_climbs_a_noisy_score(seed):
    bounds = {"learning_rate": (1e-5, 1e-1), "clip": (0.05, 0.4)}
    noise = np.random.default_rng(100 + seed)
    optimum = np.array([0.5, unit(0.3, 0.05, 0.4)])  # learning_rate 1e-3, clip 0.3

    def x_of(p: dict) -> np.ndarray:
        return np.array(
            [unit(p["learning_rate"], 1e-5, 1e-1, log=True), unit(p["clip"], 0.05, 0.4)]
        )

    def score(p: dict) -> float:  # CartPole-sized scores, to show the step is unit-free
        return float(500 - 400 * np.sum((x_of(p) - optimum) ** 2) + noise.normal(0, 5))

    start = {"learning_rate": 3e-5, "clip": 0.1}
    opt = SPSAOptimizer(bounds, seed=seed)
    suggested = drive(opt, start, score, 300)
    before = np.linalg.norm(x_of(start) - optimum)
    after = np.linalg.norm(x_of(suggested[-1]) - optimum)
    assert not opt.is_probing  # 300 evaluations: 100 whole cycles, ending at a centre
    assert after < 0.15 * before, (before, after, suggested[-1])


def test_spsa_step_does_not_depend_on_the_scores_units():
    def run(scale: float, shift: float) -> list[dict]:
        noise = np.random.default_rng(0)
        opt = SPSAOptimizer({"x": (0.0, 1.0), "y": (0.0, 1.0)}, seed=0)
        return drive(
            opt,
            {"x": 0.2, "y": 0.9},
            lambda p: (
                scale * (-((p["x"] - 0.6) ** 2) - p["y"] ** 2 + noise.normal(0, 0.01)) + shift
            ),
            60,
        )

    for a, b in zip(run(1.0, 0.0), run(1e4, 37.0), strict=True):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_spsa_restarts_from_what_the_agent_holds_when_a_probe_is_overridden():
    opt = SPSAOptimizer({"x": (0.0, 1.0)}, seed=0)
    plus = opt.suggest(HyperparamSet({"x": 0.5}), EvalMetrics(0.0))
    assert plus.params["x"] in (pytest.approx(0.6), pytest.approx(0.4))
    # A rollback put x = 0.3 back before the score came: that score is not the probe's.
    restarted = opt.suggest(HyperparamSet({"x": 0.3}), EvalMetrics(-100.0))
    assert opt.is_probing and opt.last_gradient is None
    minus = opt.suggest(restarted, EvalMetrics(0.0))
    assert restarted.params["x"] + minus.params["x"] == pytest.approx(0.6)


def test_spsa_skips_the_step_on_a_non_finite_score():
    opt = SPSAOptimizer({"x": (0.0, 1.0)}, seed=0)
    plus = opt.suggest(HyperparamSet({"x": 0.5}), EvalMetrics(0.0))
    minus = opt.suggest(plus, EvalMetrics(math.nan))
    centre = opt.suggest(minus, EvalMetrics(1.0))
    assert centre.params["x"] == pytest.approx(0.5)
    assert opt.last_gradient is None and opt.state_dict()["k"] == 0


# ---- Momentum ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_momentum_climbs_a_noisy_2d_score(seed):
    noise = np.random.default_rng(seed)
    opt = MomentumOptimizer({"x": (0.0, 1.0), "y": (-1.0, 1.0)}, seed=seed)
    suggested = drive(
        opt,
        {"x": 0.1, "y": 0.8},
        lambda p: -((p["x"] - 0.7) ** 2) - 0.5 * (p["y"] + 0.2) ** 2 + noise.normal(0, 0.01),
        240,
    )
    final = suggested[-1]
    assert abs(final["x"] - 0.7) < 0.12 and abs(final["y"] + 0.2) < 0.25, final


def test_momentum_moves_every_coordinate_by_exactly_a_k():
    opt = MomentumOptimizer({"x": (0.0, 1.0), "y": (0.0, 10.0)}, a=0.05, seed=0)
    plus = opt.suggest(HyperparamSet({"x": 0.5, "y": 5.0}), EvalMetrics(0.0))
    minus = opt.suggest(plus, EvalMetrics(1e-6))  # a tiny difference: a full step all the same
    centre = opt.suggest(minus, EvalMetrics(0.0))
    assert abs(centre.params["x"] - 0.5) == pytest.approx(0.05)
    assert abs(centre.params["y"] - 5.0) == pytest.approx(0.5)


# ---- Backoff -------------------------------------------------------------------------------


def test_backoff_probes_one_parameter_up_and_down_then_commits():
    opt = BackoffOptimizer({"x": (0.0, 1.0), "y": (0.0, 1.0)}, step=0.1, seed=0)

    def score(p: dict) -> float:  # up helps x
        return {0.6: 1.0, 0.4: -1.0}.get(round(p["x"], 9), 0.0)

    first = opt.suggest(HyperparamSet({"x": 0.5, "y": 0.5}), EvalMetrics(0.0))
    second = opt.suggest(first, EvalMetrics(score(first.params)))
    assert opt.is_probing and first.params["y"] == second.params["y"] == 0.5
    assert sorted([first.params["x"], second.params["x"]]) == pytest.approx([0.4, 0.6])
    centre = opt.suggest(second, EvalMetrics(score(second.params)))
    assert not opt.is_probing
    assert centre.params == pytest.approx({"x": 0.6, "y": 0.5})
    following = opt.suggest(centre, EvalMetrics(0.5))  # y's turn now
    assert following.params["x"] == pytest.approx(0.6)
    assert following.params["y"] == pytest.approx(0.4) or following.params["y"] == pytest.approx(
        0.6
    )


def test_backoff_shrinks_the_step_when_neither_probe_helps():
    opt = BackoffOptimizer({"x": (0.0, 1.0)}, step=0.2, shrink=0.5, min_step=0.03, seed=0)
    suggested = drive(opt, {"x": 0.5}, lambda p: 1.0 if p["x"] == 0.5 else 0.0, 3 * 5)
    assert {round(p["x"], 9) for p in suggested[2::3]} == {0.5}  # never moved
    assert opt.steps["x"] == pytest.approx(0.03)  # 0.2 → 0.1 → 0.05 → 0.03 (floor)


@pytest.mark.parametrize("seed", range(3))
def test_backoff_climbs_noisy_1d_and_2d_scores(seed):
    noise = np.random.default_rng(seed)
    one = BackoffOptimizer({"x": (0.0, 1.0)}, seed=seed)
    final = drive(one, {"x": 0.1}, lambda p: -((p["x"] - 0.7) ** 2) + noise.normal(0, 1e-3), 90)
    assert abs(final[-1]["x"] - 0.7) < 0.1, final[-1]
    two = BackoffOptimizer({"x": (0.0, 1.0), "lr": (1e-5, 1e-1)}, log_scale=["lr"], seed=seed)
    final = drive(
        two,
        {"x": 0.9, "lr": 1e-5},
        lambda p: (
            -((p["x"] - 0.3) ** 2) - (math.log10(p["lr"]) + 3) ** 2 / 16 + noise.normal(0, 1e-3)
        ),
        150,
    )
    assert abs(final[-1]["x"] - 0.3) < 0.1 and abs(math.log10(final[-1]["lr"]) + 3) < 0.4, final[-1]


def test_backoff_rescores_what_the_agent_holds_after_an_override():
    opt = BackoffOptimizer({"x": (0.0, 1.0)}, seed=0)
    opt.suggest(HyperparamSet({"x": 0.5}), EvalMetrics(0.0))
    held = opt.suggest(HyperparamSet({"x": 0.25}), EvalMetrics(9.0))  # a rollback intervened
    assert held.params == {"x": 0.25} and not opt.is_probing
    probe = opt.suggest(held, EvalMetrics(1.0))
    assert probe.params["x"] == pytest.approx(0.25 + 0.1) or probe.params["x"] == pytest.approx(
        0.25 - 0.1
    )


# ---- PBT -----------------------------------------------------------------------------------


def _decade_chi_square(values: np.ndarray, low_exp: int, high_exp: int) -> float:
    counts, _ = np.histogram(np.log10(values), bins=np.arange(low_exp, high_exp + 1))
    expected = len(values) / (high_exp - low_exp)
    return float(((counts - expected) ** 2 / expected).sum())


def test_pbt_log_scale_perturbation_is_uniform_per_decade():
    bounds = {"lr": (1e-6, 1.0), "linear": (1e-6, 1.0)}
    opt = PBTOptimizer(bounds, log_scale=["lr"], perturb_scale=0.5, seed=0)
    # δ = 0.5·ln(1e6): from 1e-3 the log perturbation reaches exactly [1e-6, 1], six decades.
    draws = [opt.perturb({"lr": 1e-3, "linear": 0.5}) for _ in range(20_000)]
    lr = np.array([d["lr"] for d in draws])
    linear = np.array([d["linear"] for d in draws])
    assert lr.min() >= 1e-6 and lr.max() <= 1.0
    assert opt.perturb({"lr": 1e-3, "linear": 0.5, "net": "mlp"})["net"] == "mlp"
    # χ² with 5 degrees of freedom: 20.5 is its 99.9% quantile.
    assert _decade_chi_square(lr, -6, 0) < 20.5
    # The same range searched linearly puts ~90% of its draws in the top decade.
    assert _decade_chi_square(linear, -6, 0) > 1000
    assert np.mean(linear > 0.1) > 0.85


def test_pbt_members_take_turns_and_the_bottom_copies_the_top():
    opt = PBTOptimizer({"lr": (1e-5, 1e-1)}, population_size=4, perturb_scale=0.05, seed=2)

    def score(p: dict) -> float:  # best at 1e-3
        return -abs(math.log10(p["lr"]) + 3)

    current = HyperparamSet({"lr": 1e-4, "gamma": 0.99})
    turns = []
    metrics = EvalMetrics(score(current.params))
    for _ in range(4):
        current = opt.suggest(current, metrics)
        turns.append((current.params["lr"], opt.is_probing))
        assert current.params["gamma"] == 0.99
        metrics = EvalMetrics(score(current.params))
    members = [m["lr"] for m in opt.members]
    assert sorted(lr for lr, _ in turns) == sorted(members)  # each member once per round
    assert [probing for lr, probing in turns] == [lr != 1e-4 for lr, _ in turns]  # incumbent: 1e-4
    ranked = sorted(members, key=lambda lr: score({"lr": lr}), reverse=True)
    opt.suggest(current, metrics)  # the round's last score arrives: exploit and explore
    assert opt.incumbent == {"lr": ranked[0]}
    after = [m["lr"] for m in opt.members]
    assert ranked[-1] not in after  # the worst member was replaced ...
    (new,) = set(after) - set(members)
    delta = 0.05 * math.log(1e4)
    assert abs(math.log(new / ranked[0])) <= delta + 1e-12  # ... by a perturbed copy of the best
    assert sum(math.isnan(s) for s in opt.scores) == 1


@pytest.mark.parametrize("seed", range(3))
def test_pbt_climbs_a_noisy_score(seed):
    noise = np.random.default_rng(seed)
    opt = PBTOptimizer(
        {"lr": (1e-6, 1e-1), "clip": (0.0, 1.0)}, log_scale=["lr"], population_size=6, seed=seed
    )
    drive(
        opt,
        {"lr": 1e-5, "clip": 0.9},
        lambda p: (
            -((math.log10(p["lr"]) + 3) ** 2) - 4 * (p["clip"] - 0.3) ** 2 + noise.normal(0, 0.05)
        ),
        300,
    )
    best = opt.incumbent
    assert best is not None
    assert abs(math.log10(best["lr"]) + 3) < 0.6 and abs(best["clip"] - 0.3) < 0.25, best


def test_pbt_credits_no_score_to_a_member_the_agent_no_longer_holds():
    opt = PBTOptimizer({"x": (0.0, 1.0)}, population_size=2, seed=0)
    first = opt.suggest(HyperparamSet({"x": 0.5}), EvalMetrics(0.0))
    opt.suggest(HyperparamSet({"x": first.params["x"] + 0.2}), EvalMetrics(50.0))
    assert all(math.isnan(s) for s in opt.scores)
