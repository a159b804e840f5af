"""The numpy half of the action distributions every backend shares."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from optix_core.policies.distributions import (
    RAW,
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
    SquashedGaussian,
    distribution_for,
    squash_correction,
)
from optix_core.policies.observations import pack, probe_samples, unpacked


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_categorical_draws_follow_the_softmax_and_record_its_log_probability() -> None:
    dist = Categorical(gym.spaces.Discrete(3, start=1))
    logits = np.tile(np.array([[0.0, 1.0, -1.0]], dtype=np.float32), (20_000, 1))
    actions, info = dist.sample(logits, np.random.default_rng(0))
    frequencies = np.bincount(actions - 1, minlength=3) / len(actions)
    np.testing.assert_allclose(frequencies, softmax(logits[0]), atol=0.01)
    np.testing.assert_allclose(
        info["log_probs"], np.log(softmax(logits[0]))[actions - 1], rtol=1e-5
    )
    assert dist.mode(logits[:2]).tolist() == [2, 2]
    assert dist.from_env(actions[:3]).ravel().tolist() == (actions[:3] - 1).tolist()


def test_multi_categorical_and_bernoulli_log_probabilities_are_sums_over_dimensions() -> None:
    rng = np.random.default_rng(1)
    multi = MultiCategorical(gym.spaces.MultiDiscrete([2, 3]))
    logits = rng.normal(size=(5, 5)).astype(np.float32)
    actions, info = multi.sample(logits, rng)
    expected = (
        np.log(softmax(logits[:, :2]))[np.arange(5), actions[:, 0]]
        + np.log(softmax(logits[:, 2:]))[np.arange(5), actions[:, 1]]
    )
    np.testing.assert_allclose(info["log_probs"], expected, rtol=1e-5)

    bits = Bernoulli(gym.spaces.MultiBinary(4))
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    actions, info = bits.sample(logits, rng)
    p = 1 / (1 + np.exp(-logits))
    expected = np.log(np.where(actions == 1, p, 1 - p)).sum(-1)
    np.testing.assert_allclose(info["log_probs"], expected, rtol=1e-5)


def test_squashed_gaussian_stays_in_the_bounds_and_recovers_its_draw() -> None:
    space = gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0]), dtype=np.float32)
    dist = SquashedGaussian(space)
    params = np.array([[0.3, -0.2, 0.5, -1.0]] * 4, dtype=np.float32)
    actions, info = dist.sample(params, np.random.default_rng(2))
    assert space.contains(actions[0]) and actions.dtype == np.float32
    np.testing.assert_allclose(dist.from_env(actions), info[RAW], atol=1e-4)
    u = info[RAW]
    std = np.exp(params[:, 2:])
    gaussian = (
        -0.5 * ((u - params[:, :2]) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    ).sum(-1)
    np.testing.assert_allclose(
        info["log_probs"], gaussian - squash_correction(u).sum(-1), rtol=1e-4
    )
    np.testing.assert_allclose(dist.old_log_probs(info["log_probs"], u), gaussian, rtol=1e-4)


def test_the_box_distribution_is_chosen_by_name_and_bad_spaces_are_refused() -> None:
    box = gym.spaces.Box(-1, 1, (2,))
    assert isinstance(distribution_for(box), SquashedGaussian)
    assert isinstance(distribution_for(box, "gaussian"), DiagGaussian)
    with pytest.raises(ValueError, match="unknown continuous distribution 'beta'"):
        distribution_for(box, "beta")
    with pytest.raises(ValueError, match="acts on Discrete, MultiDiscrete"):
        distribution_for(gym.spaces.Text(5), owner="ppo")
    with pytest.raises(ValueError, match="unbounded"):
        SquashedGaussian(gym.spaces.Box(-np.inf, np.inf, (2,)))


def test_dict_observations_pack_into_records_and_back() -> None:
    space = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 255, (3, 3, 1), np.uint8), "pos": gym.spaces.Box(-1, 1, (2,))}
    )
    batch = probe_samples(space, 4)
    again = probe_samples(space, 4)  # seeded: the same every call
    np.testing.assert_array_equal(batch["pos"], again["pos"])
    records = pack(batch, (4,))
    assert records.shape == (4,) and records.dtype["image"].base == np.uint8
    back = unpacked(records)
    for key in batch:
        np.testing.assert_array_equal(back[key], batch[key])
