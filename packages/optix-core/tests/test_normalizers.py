"""Running statistics: exact shard merges, observation clipping, return-based reward scaling, state."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from optix_core.normalizers import NormalizerError, ObsNormalizer, RewardNormalizer, RunningMeanStd


@pytest.mark.parametrize("shape", [(), (3,), (2, 2)])
def test_statistics_merged_from_shards_equal_those_of_the_whole(shape):
    rng = np.random.default_rng(0)
    data = rng.normal(loc=5.0, scale=3.0, size=(1000, *shape))
    cuts = [0, 1, 17, 300, 301, 1000]  # uneven shards, one of a single sample
    workers = []
    for lo, hi in itertools.pairwise(cuts):
        w = RunningMeanStd(shape)
        for chunk in np.array_split(data[lo:hi], 3):  # each worker updates in batches too
            w.update(chunk)
        workers.append(w)
    merged = RunningMeanStd(shape)
    for w in workers:
        merged.merge(w)
    np.testing.assert_allclose(merged.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.var, data.var(axis=0), rtol=1e-12)
    assert merged.count == 1000


def test_single_samples_and_empty_state():
    rms = RunningMeanStd(2)
    np.testing.assert_array_equal(rms.mean, [0, 0])
    np.testing.assert_array_equal(rms.var, [1, 1])
    rms.update([1.0, 2.0])
    rms.update(np.array([[3.0, 6.0]]))
    np.testing.assert_allclose(rms.mean, [2, 4])
    np.testing.assert_allclose(rms.var, [1, 4])
    rms.merge(RunningMeanStd(2))  # an empty worker changes nothing
    assert rms.count == 2
    with pytest.raises(
        NormalizerError,
        match=r"got data of shape \(4, 3\), expected \(2,\) for one sample or \(B, 2\)",
    ):
        rms.update(np.zeros((4, 3)))


def test_obs_normalizer_standardises_and_clips():
    rng = np.random.default_rng(1)
    norm = ObsNormalizer((3,), clip=2.0)
    obs = rng.normal(loc=[0, 10, -5], scale=[1, 5, 0.1], size=(5000, 3))
    norm.update(obs)
    out = norm.normalize(obs)
    assert out.dtype == np.float32 and out.shape == obs.shape
    assert np.abs(out).max() <= 2.0
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=0.05)
    np.testing.assert_allclose(norm.normalize(norm.mean), 0, atol=1e-6)
    np.testing.assert_allclose(norm.normalize(norm.mean + 10 * np.sqrt(norm.var)), 2.0)


def test_reward_normalizer_scales_by_the_return_std_and_resets_at_episode_ends():
    norm = RewardNormalizer(gamma=0.5, clip=0.0, n_envs=2)
    rewards = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    dones = np.array([[False, False], [True, False], [False, False]])
    out = norm.normalize_window(rewards, dones)
    # Running returns G = 0.5 G + r, zeroed after a done: column 0: 1, 1.5, (reset) 1;
    # column 1: 2, 3, 3.5.
    returns = np.array([1, 2, 1.5, 3, 1, 3.5])
    np.testing.assert_allclose(norm.rms.var, returns.var(), rtol=1e-12)
    np.testing.assert_allclose(norm.returns, [1.0, 3.5])
    np.testing.assert_allclose(out, rewards / np.sqrt(returns.var() + 1e-8), rtol=1e-6)
    assert out.dtype == np.float32
    # step/reset by hand give the same statistics as normalize_window.
    by_hand = RewardNormalizer(gamma=0.5, n_envs=2)
    for r, d in zip(rewards, dones, strict=True):
        by_hand.step(r)
        by_hand.reset(d)
    np.testing.assert_allclose(by_hand.rms.var, norm.rms.var)
    by_hand.reset()
    np.testing.assert_array_equal(by_hand.returns, [0, 0])


def test_reward_normalizer_keeps_the_sign_and_clips():
    norm = RewardNormalizer(gamma=0.9, clip=1.0)
    for r in [1.0, -1.0, 0.5, 2.0]:
        norm.step(r)
    out = norm.normalize([-100.0, 0.1, 100.0])
    assert out[0] == -1.0 and out[2] == 1.0 and 0 < out[1] < 1


def test_state_dicts_round_trip_and_are_plain():
    rng = np.random.default_rng(2)
    obs = ObsNormalizer((4,))
    obs.update(rng.normal(size=(100, 4)))
    rew = RewardNormalizer(gamma=0.99, n_envs=3)
    for _ in range(10):
        rew.step(rng.normal(size=3))
    for src, fresh in ((obs, ObsNormalizer((4,))), (rew, RewardNormalizer(gamma=0.99, n_envs=3))):
        state = src.state_dict()
        assert all(isinstance(v, np.ndarray | float) for v in state.values())
        fresh.load_state_dict(state)
        x = rng.normal(size=(5, 4)) if src is obs else rng.normal(size=3)
        np.testing.assert_array_equal(fresh.normalize(x), src.normalize(x))
        assert fresh.state_dict().keys() == state.keys()
    np.testing.assert_array_equal(rew.state_dict()["returns"], rew.returns)
    with pytest.raises(
        NormalizerError, match=r"saved statistics have shapes \(4,\) and \(4,\), expected \(3,\)"
    ):
        ObsNormalizer((3,)).load_state_dict(obs.state_dict())
    with pytest.raises(
        NormalizerError, match=r"running returns have shape \(3,\), expected \(1,\)"
    ):
        RewardNormalizer().load_state_dict(rew.state_dict())
    with pytest.raises(NormalizerError, match="reward has 2 entries, expected one per env column"):
        rew.step([1.0, 2.0])
