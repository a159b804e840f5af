"""TrialOrchestrator's parameter-space spec: every bad entry is refused up front."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from optix_core.algorithms.cem_config import SEARCH_SPACE
from optix_core.search_space import (
    NOISES,
    Param,
    SearchSpaceError,
    parse_search_space,
    perturb_params,
    perturb_value,
    sample_params,
)

GOOD = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "clip_ratio": ("float", 0.1, 0.3),
    "n_epochs": ("int", 3, 10),
    "batch_size": ("log_int", 32, 512),
    "activation": ("categorical", "tanh", "relu"),
}


def test_every_kind_parses_in_order():
    space = parse_search_space(GOOD)
    assert list(space) == list(GOOD)
    assert space["learning_rate"] == Param("learning_rate", "log_float", 1e-4, 3e-3)
    assert space["learning_rate"].log and not space["clip_ratio"].log
    assert space["n_epochs"] == Param("n_epochs", "int", 3, 10)
    assert space["activation"].choices == ("tanh", "relu")


def test_lists_and_integral_floats_are_accepted():
    space = parse_search_space({"n": ["int", 1.0, 4], "x": ["float", 0, 1]})
    assert space["n"].low == 1 and isinstance(space["n"].low, int)
    assert space["x"].high == 1.0 and isinstance(space["x"].high, float)


def test_every_registered_search_space_is_valid():
    parse_search_space(SEARCH_SPACE)


@pytest.mark.parametrize(
    ("space", "says"),
    [
        ({"lr": ("uniform", 0.0, 1.0)}, "unknown kind 'uniform'"),
        ({"lr": "log_float"}, "is not a (kind, ...) tuple"),
        ({"lr": ()}, "is not a (kind, ...) tuple"),
        ({"lr": ("float", 0.1)}, "takes two bounds (lo, hi), got 1"),
        ({"lr": ("float", 0.1, 0.2, 0.3)}, "takes two bounds (lo, hi), got 3"),
        ({"lr": ("float", "0.1", 0.3)}, "bound '0.1' is not a finite number"),
        ({"lr": ("float", None, 0.3)}, "bound None is not a finite number"),
        ({"lr": ("float", True, 0.3)}, "bound True is not a finite number"),
        ({"lr": ("float", 0.0, float("inf"))}, "bound inf is not a finite number"),
        ({"n": ("int", 1.5, 4)}, "'int' bounds must be integers, got 1.5"),
        ({"lr": ("categorical",)}, "needs at least one value"),
        ({"act": ("categorical", "tanh", "tanh")}, "repeat a value"),
        ({"act": ("categorical", [64, 64], [32])}, "categorical values are None, bool"),
        ({"": ("float", 0, 1)}, "search space keys are hyperparameter names"),
    ],
)
def test_malformed_entries_are_refused(space, says):
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(space)
    assert says in str(info.value)
    if "keys" not in says:
        assert repr(next(iter(space))) in str(info.value), "the message names the entry"
        assert "('log_float', lo, hi)" in str(info.value), "and lists what is accepted"


@pytest.mark.parametrize(
    "spec", [("float", 0.3, 0.1), ("log_float", 1e-2, 1e-4), ("int", 10, 3), ("log_int", 512, 32)]
)
def test_lo_above_hi_is_refused(spec):
    with pytest.raises(SearchSpaceError, match=r"lo .* is greater than hi"):
        parse_search_space({"p": spec})


@pytest.mark.parametrize(
    "spec",
    [("log_float", 0.0, 1e-3), ("log_float", -1e-3, 1e-3), ("log_int", 0, 64), ("log_int", -4, 8)],
)
def test_a_log_range_touching_zero_is_refused(spec):
    with pytest.raises(SearchSpaceError, match="log of zero or below"):
        parse_search_space({"p": spec})


def test_a_degenerate_range_is_one_value():
    space = parse_search_space({"x": ("float", 0.5, 0.5), "n": ("log_int", 8, 8)})
    params = sample_params(optuna.create_study().ask(), space)
    assert params == {"x": 0.5, "n": 8}


@pytest.mark.parametrize("space", [{}, [("lr", ("float", 0, 1))], None])
def test_an_empty_or_non_mapping_space_is_refused(space):
    with pytest.raises(SearchSpaceError):
        parse_search_space(space)


def test_search_space_error_is_a_value_error():
    assert issubclass(SearchSpaceError, ValueError)


def test_samples_stay_in_range_with_the_right_types_and_log_scale():
    space = parse_search_space(GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = [sample_params(study.ask(), space) for _ in range(400)]
    for params in draws:
        assert 1e-4 <= params["learning_rate"] <= 3e-3
        assert 0.1 <= params["clip_ratio"] <= 0.3
        assert isinstance(params["n_epochs"], int) and 3 <= params["n_epochs"] <= 10
        assert isinstance(params["batch_size"], int) and 32 <= params["batch_size"] <= 512
        assert params["activation"] in ("tanh", "relu")
    # Log-uniform: about half the learning rates fall below the geometric midpoint
    # (5.5e-4), where a uniform draw would put only 15% of them.
    below = sum(p["learning_rate"] < (1e-4 * 3e-3) ** 0.5 for p in draws) / len(draws)
    assert 0.4 < below < 0.6
    distributions = study.trials[0].distributions
    assert distributions["learning_rate"].log and not distributions["clip_ratio"].log
    assert distributions["batch_size"].log


# ---- the one perturbation rule (PBT, PolicyManager) -------------------------------------


def test_perturb_value_moves_log_ranges_by_factors_and_linear_ranges_by_amounts():
    lr = Param("lr", "log_float", 1e-4, 1e-2)
    # δ = scale·ln(high/low): θ' = θ·exp(δ·ε)
    assert perturb_value(lr, 1e-3, 0.5, 0.4) == pytest.approx(1e-3 * math.exp(0.2 * math.log(100)))
    assert perturb_value(lr, 1e-3, 0.5, 10.0) == 1e-2  # clipped into the range
    assert perturb_value(lr, 0.0, 0.5, 0.0) == 1e-4  # a value outside starts from the edge
    clip = Param("clip", "float", 0.1, 0.3)
    # δ = scale·(high − low): θ' = θ + δ·ε
    assert perturb_value(clip, 0.2, 0.5, 0.5) == pytest.approx(0.25)
    assert perturb_value(clip, 0.2, 0.5, -9.0) == 0.1
    n = Param("n", "int", 3, 15)
    moved = perturb_value(n, 10, 0.1, 1.0)  # 10 + 1.2
    assert moved == 11 and isinstance(moved, int)
    batch = Param("batch", "log_int", 32, 256)
    assert perturb_value(batch, 64, 0.5, 1.0) == round(64 * math.exp(0.5 * math.log(8)))
    act = Param("act", "categorical", choices=("tanh", "relu"))
    assert perturb_value(act, "tanh", 0.5, 3.0) == "tanh"  # structural: never moved
    x = Param("x", "float", 0.5, 0.5)
    assert perturb_value(x, 0.7, 0.5, 1.0) == 0.5  # a degenerate range is one value


def test_perturb_params_moves_the_space_only_and_stays_inside_it():
    space = parse_search_space(GOOD)
    params = {
        "learning_rate": 1e-3,
        "clip_ratio": 0.2,
        "n_epochs": 10,
        "batch_size": 64,
        "activation": "tanh",
        "gamma": 0.99,
    }
    rng = np.random.default_rng(0)
    delta = 0.3 * math.log(3e-3 / 1e-4)
    for noise in NOISES:
        for _ in range(300):
            p = perturb_params(params, space, 0.3, rng, noise=noise)
            assert 1e-4 <= p["learning_rate"] <= 3e-3 and 0.1 <= p["clip_ratio"] <= 0.3
            assert isinstance(p["n_epochs"], int) and 3 <= p["n_epochs"] <= 10
            assert isinstance(p["batch_size"], int) and 32 <= p["batch_size"] <= 512
            assert p["activation"] == "tanh" and p["gamma"] == 0.99
            if noise == "uniform":  # ε ~ U(−1, 1): never further than δ
                assert abs(math.log(p["learning_rate"] / 1e-3)) <= delta + 1e-12
    assert perturb_params(params, space, 0.0, rng) == params
    assert perturb_params({"gamma": 0.99}, space, 0.3, rng) == {"gamma": 0.99}  # absent: skipped
    with pytest.raises(ValueError, match="not a number"):
        perturb_params({"learning_rate": "fast"}, space, 0.1, rng)
    with pytest.raises(ValueError, match="noise"):
        perturb_params(params, space, 0.1, rng, noise="cauchy")
