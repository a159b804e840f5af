"""FlaxPPOAgent: conformance, the update, checkpoints, learning (every space: test_policies.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from optix_core import on_policy
from optix_core.evaluation import evaluate_policy
from optix_core.pipeline import VectorBatchPipeline
from optix_core.returns import compute_gae
from optix_core.testing import AgentConformance
from optix_core.testing.learning_runs import learn_with_evaluations
from optix_core.testing.normalization import NormalizationConformance
from optix_core.testing.schedule import ScheduleConformance
from optix_core.types import HyperparamSet
from optix_jax.algorithms.on_policy import gae
from optix_jax.algorithms.ppo import FlaxPPOAgent, make_ppo, ppo_loss
from optix_jax.policies.networks import MLP
from optix_jax.serialization import UnsafeCheckpointError

CARTPOLE = gym.make("CartPole-v1")
OBS, ACT = CARTPOLE.observation_space, CARTPOLE.action_space


class TestPPOConformance(AgentConformance):
    algo = "ppo"
    backend = "jax"


class TestPPONormalization(NormalizationConformance):
    backend = "jax"


class TestPPOSchedule(ScheduleConformance):
    algo = "ppo"
    backend = "jax"
    hyperparams: ClassVar[dict[str, Any]] = {"n_epochs": 2}


def window(agent, env_id: str = "CartPole-v1", n_envs: int = 2, steps: int = 64):
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=n_envs, window_size=steps, seed=0, agent=agent
    )
    try:
        return pipeline.collect()
    finally:
        pipeline.close()


def mlp(in_dim: int, out_dim: int, seed: int = 0) -> MLP:
    return MLP(in_dim, (32,), out_dim, 1.0, "tanh", nnx.Rngs(seed))


def parameters(agent) -> list[np.ndarray]:
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(agent.networks, nnx.Param))]


def test_the_jitted_update_equals_one_gradient_step_written_out() -> None:
    """One window, one epoch, one minibatch: the parameters after the jitted update
    equal those after the loss's gradient, clipped and applied by hand with optax."""
    import optax

    hp = HyperparamSet({"n_epochs": 1, "minibatch_size": 128, "normalize_advantage": False})
    agent = make_ppo(OBS, ACT, hyperparams=hp, device="cpu", seed=0)
    twin = make_ppo(OBS, ACT, hyperparams=hp, device="cpu", seed=0)
    data = window(agent)
    n = 128
    obs = data.observations.reshape(n, 4)
    actions = agent.distribution.learn_actions(data.actions, data.policy_info, n)
    values, nxt, final, old = on_policy.rollout_values(
        data, obs, actions, agent.distribution, agent._numpy_forward, agent._numpy_log_prob
    )
    adv, ret = on_policy.gae(data, data.rewards, values, nxt, final, agent.hp)
    rows = jnp.asarray(on_policy.loss_table(old, adv, ret, values, actions))
    params = nnx.state(twin.networks, nnx.Param)
    graphdef, _, rest = nnx.split(twin.networks, nnx.Param, ...)

    def loss(p):
        outputs, value = nnx.merge(graphdef, p, rest)(jnp.asarray(obs))
        return ppo_loss(
            twin.distribution, outputs, value, rows, rows[:, 1], jnp.ones(n), 0.2, 0.0, 0.5, 0.01
        )[0]

    grads = jax.grad(loss)(params)
    norm = optax.tree.norm(grads)
    grads = jax.tree_util.tree_map(lambda g: g * jnp.minimum(1.0, 0.5 / (norm + 1e-6)), grads)
    tx = optax.adam(3e-4, eps=1e-5)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = optax.apply_updates(params, updates)
    agent.learn(data)
    for a, b in zip(
        jax.tree_util.tree_leaves(nnx.state(agent.networks, nnx.Param)),
        jax.tree_util.tree_leaves(expected),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_gae_in_jax_equals_optix_core() -> None:
    rng = np.random.default_rng(0)
    t, n = 37, 5
    rewards, values = rng.normal(size=(t, n)), rng.normal(size=(t, n))
    terminated, truncated = rng.random((t, n)) < 0.08, rng.random((t, n)) < 0.08
    truncated &= ~terminated
    next_values, final_values = rng.normal(size=n), rng.normal(size=(t, n))
    expected = compute_gae(
        rewards, values, terminated, truncated, next_values, final_values, gamma=0.97, lam=0.9
    )
    got = gae(
        *(jnp.asarray(a, jnp.float32) for a in (rewards, values)),
        jnp.asarray(terminated),
        jnp.asarray(truncated),
        jnp.asarray(next_values, jnp.float32),
        jnp.asarray(final_values, jnp.float32),
        0.97,
        0.9,
    )
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5)


def test_user_built_networks_and_optimizer_learn() -> None:
    import optax

    tx = optax.inject_hyperparams(optax.adam)(learning_rate=3e-4)
    agent = FlaxPPOAgent(
        mlp(4, 2),
        mlp(4, 1, seed=1),
        tx,
        hyperparams={"n_epochs": 2},
        seed=0,
        device="cpu",
        observation_space=OBS,
    )
    assert agent.distribution.n == 2
    assert agent.learn(window(agent))["updates"] > 0
    agent.set_hyperparams(HyperparamSet({"learning_rate": 1e-2}))
    assert float(
        agent.optimizer.opt_state.hyperparams["learning_rate"].get_value()
    ) == pytest.approx(1e-2)


def test_an_optimizer_without_an_injected_learning_rate_is_a_clear_error() -> None:
    import optax

    with pytest.raises(ValueError, match="inject_hyperparams"):
        FlaxPPOAgent(mlp(4, 2), mlp(4, 1), optax.adam(1e-3), observation_space=OBS, device="cpu")


def test_wrong_network_shapes_are_clear_errors() -> None:
    from optix_jax.algorithms.ppo import FlaxGaussianPPOAgent

    with pytest.raises(ValueError, match=r"actor outputs shape \(3,\).*expected \(2,\)"):
        FlaxPPOAgent(mlp(4, 3), mlp(4, 1), action_space=ACT, observation_space=OBS)
    with pytest.raises(ValueError, match=r"critic outputs shape \(2,\)"):
        FlaxPPOAgent(mlp(4, 2), mlp(4, 2), action_space=ACT, observation_space=OBS)
    with pytest.raises(ValueError, match="acts on Box action spaces"):
        FlaxGaussianPPOAgent(mlp(4, 4), mlp(4, 1), action_space=ACT)


def test_a_checkpoint_resumes_the_same_updates(tmp_path) -> None:
    """Save after one window; a fresh agent (other seed) loaded from it learns the
    next window exactly as the original does: weights, Adam's state, generators, counters."""
    hp = HyperparamSet({"n_epochs": 2, "anneal_steps": 10_000})
    agent = make_ppo(OBS, ACT, hyperparams=hp, device="cpu", seed=0)
    agent.learn(window(agent))
    agent.save_weights(str(tmp_path / "ckpt"))
    other = make_ppo(OBS, ACT, hyperparams=hp, device="cpu", seed=7)
    other.load_weights(str(tmp_path / "ckpt"))
    assert other.env_steps == agent.env_steps
    data = window(make_ppo(OBS, ACT, device="cpu", seed=3))  # acting draws from no one's stream
    agent.learn(data)
    other.learn(data)
    for a, b in zip(parameters(agent), parameters(other), strict=True):
        np.testing.assert_array_equal(a, b)
    probe = data.observations[0]
    np.testing.assert_array_equal(agent.act(probe), other.act(probe))


def test_a_pickle_or_another_architecture_is_refused_and_changes_nothing(tmp_path) -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    agent.save_weights(str(tmp_path / "ckpt"))
    wide = FlaxPPOAgent(mlp(4, 2), mlp(4, 1), observation_space=OBS, device="cpu", seed=1)
    before = parameters(wide)
    with pytest.raises(ValueError, match="does not match"):
        wide.load_weights(str(tmp_path / "ckpt"))
    assert all(np.array_equal(a, b) for a, b in zip(before, parameters(wide), strict=True))
    import pickle

    (tmp_path / "ckpt" / "weights.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(UnsafeCheckpointError, match="looks like a pickle"):
        agent.load_weights(str(tmp_path / "ckpt"))


def test_acting_does_not_retrace_per_call() -> None:
    """A user's network acts through one jitted forward pass, traced once per batch shape."""
    agent = FlaxPPOAgent(mlp(4, 2), mlp(4, 1), observation_space=OBS, device="cpu", seed=0)
    assert agent._snapshot is None
    agent.act(np.zeros((8, 4), np.float32))
    traced = agent._forward_leaves._cache_size()
    for _ in range(5):
        agent.act(np.zeros((8, 4), np.float32))
        agent.act_info(np.zeros((8, 4), np.float32), np.zeros(8, bool))
    assert agent._forward_leaves._cache_size() == traced


def test_agents_built_alike_share_their_compiled_functions() -> None:
    """Another seed or learning rate: the same update, forward pass and policy function
    (XLA compiles each once per process, seconds apiece on a CPU)."""
    a = make_ppo(OBS, ACT, device="cpu", seed=0)
    b = make_ppo(OBS, ACT, hyperparams=HyperparamSet({"learning_rate": 1e-3}), device="cpu", seed=1)
    assert a._update is b._update and a._device_update is b._device_update
    assert a._forward is b._forward and a.compiled_policy()[0] is b.compiled_policy()[0]
    assert a.compiled_policy(deterministic=True)[0] is b.compiled_policy(deterministic=True)[0]
    c = make_ppo(OBS, gym.spaces.Discrete(3), device="cpu", seed=0)
    assert c._update is not a._update


def test_the_compiled_policy_samples_as_the_distribution_says() -> None:
    """The pure policy a compiled pipeline acts with: jittable, and its log-probabilities
    are those the update's ratio reads."""
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    policy, state = agent.compiled_policy()
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, 4)), jnp.float32)
    actions, info = jax.jit(policy)(state, obs, jax.random.key(0))
    params, values = agent._forward(state, obs)
    np.testing.assert_allclose(info["values"], values, rtol=1e-6)
    expected = agent.distribution.log_prob(params, actions[:, None].astype(jnp.float32))
    np.testing.assert_allclose(info["log_probs"], expected, rtol=1e-6)
    assert set(np.asarray(actions).tolist()) == {0, 1}


@pytest.mark.slow
def test_learns_cartpole() -> None:
    """rl-zoo's CartPole-v1 settings (8 envs × 32 steps, minibatch 256, 20 epochs,
    λ 0.8, γ 0.98, no entropy bonus, lr and clip linear from 1e-3 and 0.2), seed 0:
    a deterministic 20-episode evaluation every 8,192 steps reaches 475 within
    40,960 steps, and the policy that reached it scores 475 on 20 other episodes."""
    hp = {
        "learning_rate": 1e-3,
        "clip_ratio": 0.2,
        "entropy_coef": 0.0,
        "gamma": 0.98,
        "gae_lambda": 0.8,
        "n_epochs": 20,
        "minibatch_size": 256,
        "anneal_steps": 100_000,
    }
    agent = make_ppo(OBS, ACT, hyperparams=HyperparamSet(hp), device="cpu", seed=0)
    scores = learn_with_evaluations(
        agent, "CartPole-v1", 40_960, stop_at=475, n_envs=8, window_size=32, every=8192
    )
    assert scores[-1] >= 475, scores
    fresh = evaluate_policy(agent, "CartPole-v1", episodes=20, seed=999_999)
    assert fresh.mean >= 475, (scores, str(fresh))


def test_acting_in_numpy_gives_the_networks_outputs_and_follows_every_weight_change(
    tmp_path,
) -> None:
    agent = make_ppo(OBS, ACT, hyperparams=HyperparamSet({"n_epochs": 2}), device="cpu", seed=0)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)

    def both() -> tuple[tuple[np.ndarray, np.ndarray], tuple[jax.Array, jax.Array]]:
        assert agent._snapshot is not None  # the default network on the CPU
        return agent._numpy_forward(obs), agent.networks(jnp.asarray(obs))

    def check() -> None:
        fast, plain = both()
        np.testing.assert_allclose(fast[0], plain[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fast[1], plain[1], rtol=1e-5, atol=1e-6)

    check()
    agent.save_weights(str(tmp_path / "start"))
    agent.learn(window(agent))  # the weights move: acting must see them
    check()
    agent.load_weights(str(tmp_path / "start"))  # and move back
    check()


def test_a_compiled_window_learns_as_the_same_window_on_the_host() -> None:
    """The device path (values of the next and final observations, GAE and the table
    in JAX) gives the parameters the host path (optix-core's table) gives on the
    same window, truncations included."""
    from dataclasses import replace

    from optix_core.registry import make_agent
    from optix_jax.pipelines.compiled import CompiledPipeline

    hp = HyperparamSet({"n_epochs": 2, "minibatch_size": 256})
    device = make_agent("ppo", "gymnax:CartPole-v1", backend="jax", hyperparams=hp, seed=0)
    host = make_agent("ppo", "gymnax:CartPole-v1", backend="jax", hyperparams=hp, seed=0)
    pipeline = CompiledPipeline("gymnax:CartPole-v1", 4, 160, seed=0, agent=device)
    data = pipeline.collect()
    # Untrained, no episode lasts to the time limit: cut a few, as a truncation does.
    rng = np.random.default_rng(0)
    cut = (rng.random(data.rewards.shape) < 0.02) & ~np.asarray(data.terminated)
    finals = np.where(cut[..., None], rng.normal(size=data.final_observations.shape), 0.0)
    data = replace(
        data,
        truncated=data.truncated | jnp.asarray(cut),
        final_observations=data.final_observations + jnp.asarray(finals, jnp.float32),
    )
    assert bool(data.terminated.any()) and cut.sum() > 5
    as_numpy = replace(
        data,
        **{
            k: np.asarray(getattr(data, k))
            for k in ("observations", "actions", "rewards", "terminated", "truncated")
        },
        next_observations=np.asarray(data.next_observations),
        final_observations=np.asarray(data.final_observations),
        policy_info={k: np.asarray(v) for k, v in data.policy_info.items()},
    )
    device_stats, host_stats = device.learn(data), host.learn(as_numpy)
    assert device_stats["updates"] == host_stats["updates"] == 6  # 640 rows, 256 a batch, 2 epochs
    for a, b in zip(parameters(device), parameters(host), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert device_stats["explained_variance"] == pytest.approx(
        host_stats["explained_variance"], abs=1e-4
    )


def test_teardown_releases_the_networks_and_acting_after_it_is_a_clear_error() -> None:
    agent = make_ppo(OBS, ACT, device="cpu", seed=0)
    agent.act(np.zeros((2, 4), np.float32))
    agent.teardown()
    agent.teardown()  # harmless twice
    with pytest.raises(RuntimeError, match="torn down"):
        agent.act(np.zeros((2, 4), np.float32))
    with pytest.raises(RuntimeError, match="torn down"):
        agent.learn(window(make_ppo(OBS, ACT, device="cpu", seed=1)))
