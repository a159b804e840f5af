"""Hyperparameter ranges: Bound, check_hyperparams, HyperparamSet, CEM's table."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

from optix_core.algorithms.cem import CEMAgent
from optix_core.algorithms.cem_config import BOUNDS, DEFAULTS, SEARCH_SPACE
from optix_core.hyperparams import Bound, HyperparamError, check_hyperparams
from optix_core.types import HyperparamSet

PPO_BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "n_epochs": Bound(1, 1000, integer=True),
    "gamma": Bound(0.0, 1.0),
    "normalize_advantage": Bound.flag(),
}


@pytest.mark.parametrize(
    ("bound", "value", "clipped"),
    [
        (Bound(0.0, 1.0), 1.02, 1.0),
        (Bound(0.0, 1.0), -0.5, 0.0),
        (Bound(0.0, 1.0), 0.5, 0.5),
        (Bound(0.0, 1.0, open_low=True), -1.0, math.nextafter(0.0, 1.0)),
        (Bound(1, 1000, integer=True), 0.2, 1),
        (Bound(1, 1000, integer=True), 1e9, 1000),
        (Bound(2.5, 7.5, integer=True), 9, 7),
        (Bound(), -1e300, -1e300),
    ],
)
def test_bound_clip_gives_the_nearest_accepted_value(bound, value, clipped):
    assert bound.clip(value) == clipped
    assert bound.accepts(bound.clip(value))
    assert isinstance(bound.clip(value), int) == bound.integer


@pytest.mark.parametrize(
    ("bound", "text"),
    [
        (Bound(0, 1), "[0, 1]"),
        (Bound(0.0, open_low=True), "(0, ∞)"),
        (Bound(), "(-∞, ∞)"),
        (Bound(2, 10_000, integer=True), "[2, 10000] (integer)"),
        (Bound(1e-5, 0.1), "[1e-05, 0.1]"),
        (Bound(-1.5, 2.5, open_low=True), "(-1.5, 2.5]"),
        (Bound(high=0), "(-∞, 0]"),
    ],
)
def test_bound_describe(bound, text):
    assert bound.describe() == text


@pytest.mark.parametrize(
    ("bound", "value", "ok"),
    [
        (Bound(0, 1), 0, True),
        (Bound(0, 1), 1, True),
        (Bound(0, 1), 1.0000001, False),
        (Bound(0, 1, open_low=True), 0, False),
        (Bound(0, 1, open_low=True), 1e-12, True),
        (Bound(1, 10, integer=True), 3, True),
        (Bound(1, 10, integer=True), 3.0, True),
        (Bound(1, 10, integer=True), 3.5, False),
        (Bound(), math.nan, False),
        (Bound(), math.inf, True),
        (Bound(0, 1), True, False),  # a bool is not a number here
        (Bound(0, 1), "0.5", False),
        (Bound(0, 1), None, False),
    ],
)
def test_bound_accepts(bound, value, ok):
    assert bound.accepts(value) is ok


def test_check_hyperparams_returns_a_dict_with_integers_made_int():
    checked = check_hyperparams({"learning_rate": 3e-4, "n_epochs": 10.0}, PPO_BOUNDS, "ppo")
    assert checked == {"learning_rate": 3e-4, "n_epochs": 10}
    assert type(checked["n_epochs"]) is int


def test_unknown_key_message_names_the_owner_the_key_and_the_known_ones():
    with pytest.raises(HyperparamError) as excinfo:
        check_hyperparams({"lr": 0.1, "zz": 1}, PPO_BOUNDS, "ppo")
    assert str(excinfo.value) == (
        "ppo: unknown hyperparameter 'lr'; known: gamma, learning_rate, n_epochs, normalize_advantage"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"learning_rate": 0.0}, "ppo: learning_rate=0.0 is outside its valid range (0, 1]"),
        ({"gamma": 1.5}, "ppo: gamma=1.5 is outside its valid range [0, 1]"),
        (
            {"n_epochs": 2.5},
            "ppo: n_epochs=2.5 is not a whole number; its valid range is [1, 1000] (integer)",
        ),
        ({"n_epochs": 0}, "ppo: n_epochs=0 is outside its valid range [1, 1000] (integer)"),
        ({"gamma": "high"}, "ppo: gamma='high' is not a number; its valid range is [0, 1]"),
        ({"gamma": True}, "ppo: gamma=True is not a number; its valid range is [0, 1]"),
        ({"normalize_advantage": 1}, "ppo: normalize_advantage=1 is not True or False"),
    ],
)
def test_out_of_range_message(params, message):
    with pytest.raises(HyperparamError) as excinfo:
        check_hyperparams(params, PPO_BOUNDS, "ppo")
    assert str(excinfo.value) == message


def test_hyperparam_error_is_a_value_error():
    assert issubclass(HyperparamError, ValueError)


def test_hyperparam_set_copy_is_deep_and_to_dict_is_json_ready():
    original = HyperparamSet(
        {"lr": np.float32(0.5), "layers": [64, 64], "n": np.int64(3), "w": np.ones(2)},
        episode_id=7,
    )
    copied = original.copy()
    copied.params["layers"].append(32)
    assert original.params["layers"] == [64, 64]
    data = json.loads(json.dumps(original.to_dict()))
    assert data == {
        "params": {"lr": 0.5, "layers": [64, 64], "n": 3, "w": [1.0, 1.0]},
        "episode_id": 7,
    }
    back = HyperparamSet.from_dict(data)
    assert back.episode_id == 7 and back.params["n"] == 3


# ---- CEM's table ----------------------------------------------------------------------------


def test_cem_defaults_and_search_space_lie_inside_the_bounds():
    assert set(DEFAULTS) == set(BOUNDS)
    check_hyperparams(DEFAULTS, BOUNDS, "cem")
    for key, (kind, low, high) in SEARCH_SPACE.items():
        assert kind in ("int", "float", "log_float")
        assert BOUNDS[key].accepts(low) and BOUNDS[key].accepts(high), key
        assert low < high


def cem():
    return CEMAgent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), seed=0)


def test_cem_set_hyperparams_checks_ranges_and_keeps_the_old_ones_on_error():
    agent = cem()
    agent.set_hyperparams(HyperparamSet({"elite_frac": 0.5}, episode_id=4))
    params = agent.get_hyperparams()
    assert params.params["elite_frac"] == 0.5 and params.episode_id == 4
    assert params.params["population_size"] == DEFAULTS["population_size"]
    with pytest.raises(HyperparamError, match="elite_frac=0 is outside its valid range"):
        agent.set_hyperparams(HyperparamSet({"elite_frac": 0}))
    with pytest.raises(HyperparamError, match="unknown hyperparameter 'lr'"):
        agent.set_hyperparams(HyperparamSet({"lr": 0.1}))
    assert agent.get_hyperparams().params["elite_frac"] == 0.5


def test_cem_hidden_size_is_fixed_once_built():
    agent = cem()
    with pytest.raises(ValueError, match="hidden_size is fixed"):
        agent.set_hyperparams(HyperparamSet({"hidden_size": 8}))


def test_cem_get_hyperparams_returns_a_copy():
    agent = cem()
    agent.get_hyperparams().params["elite_frac"] = 0.9
    assert agent.get_hyperparams().params["elite_frac"] == DEFAULTS["elite_frac"]
