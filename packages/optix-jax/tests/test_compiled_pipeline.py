"""CompiledPipeline: windows of gymnax environments collected by one jitted scan.

The agents here are hand-written pure jax policies behind the CompiledPolicy
protocol, with made-up "log_probs" and "values" as a learner would record them.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optix_core import RLOptimizer, make_agent
from optix_core.callbacks import LoopCallback
from optix_core.cli import main
from optix_core.registry import environment_family
from optix_core.specs import load_object
from optix_jax.envs.gymnax import load
from optix_jax.pipelines import CompiledPipeline, CompiledPolicy

CARTPOLE = "gymnax:CartPole-v1"


def push_or_flip(params, obs, key):
    """Push toward the pole's lean and turn, except with probability ``flip``."""
    push = (obs[:, 2] + obs[:, 3] > 0).astype(jnp.int32)
    flip = jax.random.uniform(key, push.shape) < params["flip"]
    actions = jnp.where(flip, 1 - push, push)
    return actions, {"log_probs": jnp.full(push.shape, -0.1), "values": obs[:, 0]}


def wild_torque(params, obs, key):
    """Uniform torques over twice Pendulum's range, so some need clipping."""
    actions = jax.random.uniform(key, (obs.shape[0], 1), minval=-4.0, maxval=4.0)
    return actions, {"raw_actions": actions}


class PureAgent:
    """Just enough of an agent to drive the pipeline: its policy and parameters."""

    def __init__(self, policy=push_or_flip, **params) -> None:
        self.policy = policy
        self.params = {k: jnp.float32(v) for k, v in params.items()}

    def compiled_policy(self):
        return self.policy, self.params


def cartpole(n_envs=4, window_size=64, seed=0, flip=0.3, **kwargs) -> CompiledPipeline:
    return CompiledPipeline(CARTPOLE, n_envs, window_size, seed, PureAgent(flip=flip), **kwargs)


def collect(pipeline: CompiledPipeline, windows: int) -> list:
    return [pipeline.collect() for _ in range(windows)]


def host(windows: list, field: str) -> np.ndarray:
    """One field of consecutive windows, joined along time on the host."""
    return np.concatenate([np.asarray(getattr(w, field)) for w in windows])


# ---- the window -----------------------------------------------------------------------------


def test_a_window_has_the_usual_shapes_and_stays_on_the_device():
    pipeline = cartpole(n_envs=4, window_size=64)
    assert isinstance(pipeline.agent, CompiledPolicy)
    window = pipeline.collect()
    expected = {
        "observations": ((64, 4, 4), jnp.float32),
        "actions": ((64, 4), jnp.int32),
        "rewards": ((64, 4), jnp.float32),
        "terminated": ((64, 4), jnp.bool_),
        "truncated": ((64, 4), jnp.bool_),
        "final_observations": ((64, 4, 4), jnp.float32),
        "next_observations": ((4, 4), jnp.float32),
    }
    for field, (shape, dtype) in expected.items():
        array = getattr(window, field)
        assert isinstance(array, jax.Array), field
        assert (array.shape, array.dtype) == (shape, dtype), field
    assert {k: v.shape for k, v in window.policy_info.items()} == {
        "log_probs": (64, 4),
        "values": (64, 4),
    }
    np.testing.assert_array_equal(window.policy_info["values"], window.observations[..., 0])
    assert set(window.infos) == {
        "episode_returns",
        "episode_lengths",
        "episode_start_steps",
        "recent_returns",
    }
    assert all(isinstance(v, np.ndarray) for v in window.infos.values())
    assert (window.episode_id, window.n_steps, pipeline.env_steps) == (1, 256, 256)
    pipeline.collect()
    assert pipeline.env_steps == 512


def test_box_actions_are_recorded_as_the_policy_gave_them_and_clipped_for_the_env():
    pipeline = CompiledPipeline("gymnax:Pendulum-v1", 3, 250, seed=1, agent=PureAgent(wild_torque))
    window = pipeline.collect()
    actions = np.asarray(window.actions)
    assert (window.actions.shape, window.actions.dtype) == ((250, 3, 1), jnp.float32)
    assert np.abs(actions).max() > 2.0  # unclipped in the window
    np.testing.assert_array_equal(window.policy_info["raw_actions"], actions)
    # Every Pendulum episode runs into the time limit: truncated at 200, never terminated.
    assert not np.asarray(window.terminated).any()
    assert np.asarray(window.truncated)[199].all() and np.asarray(window.truncated).sum() == 3
    np.testing.assert_array_equal(window.infos["episode_lengths"], [200, 200, 200])
    # Clipped torque costs at most 0.001 * 2**2 beyond the angle and speed terms.
    assert np.asarray(window.rewards).min() >= -(np.pi**2 + 0.1 * 8**2 + 0.001 * 4) - 1e-4


def test_the_same_seed_collects_the_same_windows():
    first, again, other = cartpole(seed=5), cartpole(seed=5), cartpole(seed=6)
    for _ in range(2):
        a, b, c = first.collect(), again.collect(), other.collect()
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.observations, c.observations)


def test_a_pipeline_that_only_acts_records_no_policy_info():
    pipeline = CompiledPipeline(CARTPOLE, 2, 8, seed=0)
    pipeline.bind(PureAgent(flip=0.0), acting_only=True)
    assert pipeline.collect().policy_info == {}


# ---- episode boundaries ---------------------------------------------------------------------


def test_every_step_is_a_real_gymnax_transition_and_final_observations_are_kept():
    """Replays every recorded (observation, action) through gymnax's own step: where
    the episode went on, the next recorded observation is its result; where it
    ended, the final observation is, and the next one is a fresh start."""
    pipeline = cartpole(n_envs=6, window_size=150, flip=0.3)
    windows = collect(pipeline, 2)
    env, params = load("CartPole-v1")
    for window in windows:
        obs = np.asarray(window.observations)
        predicted = np.asarray(_gymnax_next(env, params, obs, np.asarray(window.actions)))
        dones = np.asarray(window.dones)
        finals = np.asarray(window.final_observations)
        following = np.concatenate([obs[1:], np.asarray(window.next_observations)[None]])
        np.testing.assert_allclose(finals[dones], predicted[dones], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(following[~dones], predicted[~dones], rtol=1e-5, atol=1e-6)
        assert (finals[~dones] == 0).all()
        assert (np.abs(following[dones]) <= 0.05).all()  # CartPole's reset state
    assert host(windows, "dones").sum() > 10


def test_terminated_and_truncated_follow_gymnasiums_time_limit():
    pipeline = cartpole(n_envs=8, window_size=600, flip=0.0)
    window = pipeline.collect()
    terminated, truncated = np.asarray(window.terminated), np.asarray(window.truncated)
    assert not (terminated & truncated).any()
    lengths = _lengths_at_ends(np.asarray(window.dones))
    assert (lengths[truncated] == 500).all() and truncated.sum() >= 4
    assert (lengths[terminated] < 500).all()
    finals = np.asarray(window.final_observations)
    x, theta = finals[..., 0], finals[..., 2]
    fell = (np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * np.pi / 360)
    np.testing.assert_array_equal(fell[terminated | truncated], terminated[terminated | truncated])


def test_episode_statistics_match_the_rewards_between_boundaries():
    n_envs, window_size = 4, 50
    pipeline = cartpole(n_envs=n_envs, window_size=window_size, flip=0.4, stats_window=7)
    windows = collect(pipeline, 4)
    rewards, dones = host(windows, "rewards"), host(windows, "dones")
    returns, lengths, starts = [], [], []
    running, length = np.zeros(n_envs), np.zeros(n_envs, dtype=int)
    for t in range(len(rewards)):  # step by step, as a Python pipeline counts them
        running += rewards[t]
        length += 1
        for i in np.flatnonzero(dones[t]):
            returns.append(running[i])
            lengths.append(length[i])
            starts.append((t - length[i] + 1) * n_envs)
        running[dones[t]], length[dones[t]] = 0.0, 0
    reported = {
        key: np.concatenate([w.infos[key] for w in windows])
        for key in ("episode_returns", "episode_lengths", "episode_start_steps")
    }
    assert len(returns) > 10
    np.testing.assert_allclose(reported["episode_returns"], returns)
    np.testing.assert_array_equal(reported["episode_lengths"], lengths)
    np.testing.assert_array_equal(reported["episode_start_steps"], starts)
    np.testing.assert_allclose(windows[-1].infos["recent_returns"], returns[-7:])
    ended_in_first = int(dones[:window_size].sum())
    assert len(windows[0].infos["episode_returns"]) == ended_in_first


# ---- resume ---------------------------------------------------------------------------------


def test_a_resume_that_continues_its_episodes_collects_what_the_pipeline_never_stopped_would():
    """Stopped between windows with every environment mid-episode, saved as JSON
    and continued: the next windows are the never-stopped pipeline's, to the bit."""
    original = cartpole(seed=11)
    collect(original, 2)
    assert (np.asarray(original._carry.episode_length) > 0).all()
    state = json.loads(json.dumps(original.state_dict()))
    resumed = cartpole(seed=99)  # the seed given is overridden by the state
    resumed.load_state_dict(state)
    assert resumed.continue_episodes()
    for a, b in zip(collect(original, 3), collect(resumed, 3), strict=True):
        assert a.episode_id == b.episode_id
        for field in ("observations", "actions", "rewards", "terminated", "truncated"):
            np.testing.assert_array_equal(np.asarray(getattr(a, field)), getattr(b, field))
        for key in ("episode_returns", "episode_lengths", "episode_start_steps", "recent_returns"):
            np.testing.assert_array_equal(a.infos[key], b.infos[key])
    assert resumed.state_dict() == original.state_dict()


def test_a_resume_in_new_episodes_keeps_the_key_stream_and_the_statistics():
    original = cartpole(seed=11)
    collect(original, 2)
    state = json.loads(json.dumps(original.state_dict()))
    resumed = cartpole(seed=99)
    resumed.load_state_dict(state)
    assert resumed.env_steps == original.env_steps
    a, b = original.collect(), resumed.collect()  # without continue_episodes(): new ones
    assert resumed.state_dict()["key"] == original.state_dict()["key"]
    assert (a.episode_id, b.episode_id) == (3, 3)
    assert resumed.env_steps == original.env_steps
    # The environments restarted: all columns are fresh episodes, counted from the resume.
    np.testing.assert_array_less(np.abs(np.asarray(b.observations[0])), 0.05 + 1e-7)
    assert not np.array_equal(a.observations, b.observations)
    recent = np.concatenate([state["stats"]["recent"], b.infos["episode_returns"]])[-20:]
    np.testing.assert_allclose(b.infos["recent_returns"], recent)


def test_episodes_saved_with_other_environments_are_not_continued(caplog):
    original = cartpole(n_envs=4, seed=11)
    collect(original, 1)
    resumed = cartpole(n_envs=2, seed=11)
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert not resumed.continue_episodes()
    assert "do not fit gymnax:CartPole-v1 with 2 environments" in caplog.text
    first = resumed.collect()
    np.testing.assert_array_less(np.abs(np.asarray(first.observations[0])), 0.05 + 1e-7)


class WindowScores(LoopCallback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_episode_end(self, episode_id, metrics) -> None:
        self.seen.append((episode_id, metrics.primary_score))


def ppo_run(directory, windows: int, resume: bool = False):
    """PPO on gymnax CartPole through the loop, every window scored, online
    tuning on (its SPSA seeded by the pipeline's seed)."""
    agent = make_agent("ppo", CARTPOLE, backend="jax", seed=0, hyperparams={"n_epochs": 2})
    pipeline = CompiledPipeline(CARTPOLE, 4, 64, seed=0, agent=agent)
    scores = WindowScores()
    RLOptimizer(
        agent,
        pipeline,
        checkpoint_dir=directory,
        resume=resume,
        max_episodes=windows,
        backoff_factor=1.0,
        max_interval_episodes=1,
        callbacks=[scores],
    ).run()
    return scores.seen, pipeline.state_dict()


def test_a_resumed_ppo_run_on_the_device_is_the_run_never_stopped(tmp_path):
    """Stopped after four windows, with episodes under way in every environment,
    and resumed: the same scores and the same environments as never stopped."""
    straight, straight_state = ppo_run(tmp_path / "straight", 8)
    ppo_run(tmp_path / "split", 4)
    resumed, resumed_state = ppo_run(tmp_path / "split", 8, resume=True)
    assert resumed == [seen for seen in straight if seen[0] > 4]
    assert resumed_state == straight_state


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["CartPole-v1", "brax:Ant"])
def test_an_id_that_is_not_gymnaxs_is_one_line(env_id):
    with pytest.raises(ValueError) as excinfo:
        CompiledPipeline(env_id, 2, 8)
    message = str(excinfo.value)
    assert f"{env_id!r} is not one" in message and "'gymnax:CartPole-v1'" in message
    assert "VectorBatchPipeline" in message and "\n" not in message


def test_an_unknown_gymnax_name_lists_gymnaxs_environments():
    with pytest.raises(ValueError, match=r"gymnax has no environment 'Nope-v0'; it has: CartPole"):
        CompiledPipeline("gymnax:Nope-v0", 2, 8)


@pytest.mark.parametrize(("field", "value"), [("n_envs", 0), ("window_size", 0)])
def test_sizes_below_one_are_refused(field, value):
    sizes = {"n_envs": 2, "window_size": 8, field: value}
    with pytest.raises(ValueError, match=f"{field} must be >= 1, got 0"):
        CompiledPipeline(CARTPOLE, **sizes)


def test_an_agent_without_a_compiled_policy_is_refused_before_collecting():
    agent = make_agent("cem", CARTPOLE, seed=0)
    with pytest.raises(ValueError) as excinfo:
        CompiledPipeline(CARTPOLE, 2, 8, agent=agent)
    message = str(excinfo.value)
    assert "CEMAgent offers none" in message
    assert "an agent of the jax backend that offers compiled_policy()" in message


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("flag", ["normalize_observations", "normalize_reward"])
def test_normalizers_that_work_on_the_hosts_copy_are_refused_before_collecting(algo, flag):
    agent = make_agent(algo, CARTPOLE, backend="jax", hyperparams={flag: True}, seed=0)
    with pytest.raises(ValueError, match=f"{algo}: .* a compiled pipeline's window stays on"):
        CompiledPipeline(CARTPOLE, 2, 8, agent=agent)


# ---- through the registry and the optix command ---------------------------------------------


def test_the_gymnax_family_builds_this_pipeline_for_optix_train():
    make_pipeline = load_object(environment_family(CARTPOLE).pipeline)
    pipeline = make_pipeline(CARTPOLE, 3, 16, 7)
    assert isinstance(pipeline, CompiledPipeline)
    assert (pipeline.n_envs, pipeline.window_size, pipeline.seed) == (3, 16, 7)


def test_optix_train_refuses_an_agent_the_compiled_pipeline_cannot_drive(tmp_path, capsys):
    argv = ["train", CARTPOLE, "--algo", "cem", "--seed", "0", "--run-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("optix: error: CompiledPipeline acts through a pure policy")
    assert err.count("\n") == 1


def _gymnax_next(env, params, obs: np.ndarray, actions: np.ndarray) -> jax.Array:
    """gymnax's CartPole step from every recorded observation (its state, less the
    time, which moves no dynamics) and action."""

    def one(o, a):
        state = env.reset_env(jax.random.key(0), params)[1].replace(
            x=o[0], x_dot=o[1], theta=o[2], theta_dot=o[3]
        )
        return env.step_env(jax.random.key(0), state, a, params)[0]

    return jax.jit(jax.vmap(jax.vmap(one)))(obs, actions)


def _lengths_at_ends(dones: np.ndarray) -> np.ndarray:
    """Each step's episode length so far, counted from the window's start."""
    lengths = np.zeros(dones.shape, dtype=int)
    length = np.zeros(dones.shape[1], dtype=int)
    for t in range(len(dones)):
        length += 1
        lengths[t] = length
        length[dones[t]] = 0
    return lengths
