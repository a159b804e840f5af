import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch  # before SB3, so nothing can import tensorflow first (see DESIGN.md)
from sb3_side_by_side import (
    assert_equal_critics,
    assert_equal_parameters,
    copy_parameters,
    gradient_step_side_by_side,
    sb3_model,
)
from stable_baselines3 import SAC
from torch import nn

from optix_core import (
    EpisodeData,
    HyperparamSet,
    LoopCallback,
    RLOptimizer,
    SPSAOptimizer,
    make_agent,
)
from optix_core.buffers import CompactReplayBuffer
from optix_core.hyperparams import HyperparamError
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import RegistryError
from optix_core.testing import (
    AgentConformance,
    toy_envs,  # registers the optix-tests/ environments
)
from optix_core.testing.actor_critic import (
    ACT,
    OBS,
    PointerConformance,
    collect,
    learn_pendulum,
    learn_to_point,
    resume,
)
from optix_core.testing.gsde import GSDEConformance
from optix_core.testing.learning_runs import collect_windows
from optix_torch.algorithms import replay
from optix_torch.algorithms.off_policy import ActionScaler, TwinQ
from optix_torch.algorithms.sac import TorchSACAgent, make_sac
from optix_torch.policies.networks import mlp

torch.set_num_threads(1)


class TestSACConformance(AgentConformance):
    algo = "sac"
    backend = "torch"


class TestSACObservationSpacesConformance(PointerConformance):
    algo = "sac"
    backend = "torch"


def small_agent(seed: int = 0, **hp) -> TorchSACAgent:
    return make_sac(OBS, ACT, hyperparams=hp or None, device="cpu", seed=seed, hidden=(32, 32))


# ---- bad input --------------------------------------------------------------


def test_refuses_a_discrete_action_space() -> None:
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"sac acts on Box action spaces, got Discrete\(2\)"):
        make_sac(cartpole.observation_space, cartpole.action_space)
    with pytest.raises(RegistryError):
        make_agent("sac", "CartPole-v1", backend="torch", device="cpu")


def test_refuses_unbounded_actions() -> None:
    unbounded = gym.spaces.Box(-np.inf, np.inf, shape=(2,))
    with pytest.raises(ValueError, match="must be finite"):
        make_sac(OBS, unbounded)
    with pytest.raises(ValueError, match="must be finite"):
        TorchSACAgent(mlp(3, 4), critics=TwinQ(5), action_space=unbounded)


def test_refuses_an_actor_whose_output_does_not_fit_the_action_space() -> None:
    # SAC's actor gives [mean || log_std]: 2 columns for Pendulum, not 1.
    with pytest.raises(ValueError, match=r"actor network outputs shape \(1,\).*expected \(2,\)"):
        TorchSACAgent(mlp(3, 1), mlp(4, 1), mlp(4, 1), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match="actor network"):
        TorchSACAgent(mlp(3, 1), critics=TwinQ(4), observation_space=OBS, action_space=ACT)


def test_refuses_critics_whose_output_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"twin critic network outputs shape \(3,\)"):
        TorchSACAgent(mlp(3, 2), mlp(4, 1), mlp(4, 2), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match="twin critic"):  # built for 2 actions, not 1
        TorchSACAgent(mlp(3, 2), critics=TwinQ(5), action_dim=1, device="cpu")


def test_refuses_inconsistent_critic_arguments() -> None:
    critic = mlp(4, 1)
    with pytest.raises(ValueError, match="two networks"):
        TorchSACAgent(mlp(3, 2), critic, critic, action_dim=1)
    with pytest.raises(ValueError, match="not both"):
        TorchSACAgent(mlp(3, 2), mlp(4, 1), mlp(4, 1), action_dim=1, critics=TwinQ(4))
    with pytest.raises(ValueError, match="give both critic1 and critic2"):
        TorchSACAgent(mlp(3, 2), mlp(4, 1), action_dim=1)
    with pytest.raises(ValueError, match="does not match the action space"):
        TorchSACAgent(mlp(3, 2), critics=TwinQ(4), action_dim=2, action_space=ACT)


def test_refuses_bad_hyperparameters() -> None:
    with pytest.raises(HyperparamError, match="tau"):
        small_agent(tau=0.0)
    with pytest.raises(HyperparamError, match="ent_coef"):
        small_agent(ent_coef=-0.1)
    with pytest.raises(HyperparamError, match="entropy_coef"):
        small_agent(entropy_coef=0.1)


# ---- tensor-optix's constructor ---------------------------------------------


def test_tensor_optix_constructor_trains_the_users_networks() -> None:
    torch.manual_seed(0)
    actor = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 2))
    critic1 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    critic2 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    log_alpha_stand_in = torch.zeros(1, requires_grad=True)
    agent = TorchSACAgent(
        actor=actor,
        critic1=critic1,
        critic2=critic2,
        action_dim=1,
        actor_optimizer=torch.optim.Adam(actor.parameters(), lr=3e-4),
        critic_optimizer=torch.optim.Adam([*critic1.parameters(), *critic2.parameters()], lr=3e-4),
        alpha_optimizer=torch.optim.Adam([log_alpha_stand_in], lr=3e-4),
        hyperparams=HyperparamSet(
            params={
                "learning_rate": 1e-3,
                "gamma": 0.99,
                "tau": 0.005,
                "batch_size": 64,
                "replay_capacity": 10_000,
            }
        ),
        device="cpu",
    )
    before = [p.detach().clone() for p in (*actor.parameters(), *critic2.parameters())]
    stats = agent.learn(collect(agent, window=100)[0])
    assert all(math.isfinite(v) for v in stats.values())
    after = [*actor.parameters(), *critic2.parameters()]
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    # Without a Box the actions stay in (−1, 1), as in tensor-optix.
    actions = agent.act(np.zeros((4, 3), dtype=np.float32))
    assert actions.shape == (4, 1) and np.all(np.abs(actions) <= 1)
    # The alpha optimizer's kind and settings were reused for the agent's own log α.
    assert isinstance(agent.alpha_optimizer, torch.optim.Adam)
    assert agent.alpha_optimizer.param_groups[0]["params"] == [agent.temperature.log_alpha]


# ---- acting -------------------------------------------------------------------


def test_actions_are_scaled_to_the_bounds_and_back() -> None:
    low, high = np.array([0.0, -5.0], np.float32), np.array([10.0, 1.0], np.float32)
    space = gym.spaces.Box(low, high, dtype=np.float32)
    scaler = ActionScaler(2, space)
    unit = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(scaler.to_env(unit), [[0, -5], [5, -2], [10, 1]])
    np.testing.assert_allclose(scaler.from_env(scaler.to_env(unit)), unit, atol=1e-6)
    assert np.all(scaler.from_env(np.array([[20.0, -9.0]])) == [[1.0, -1.0]])


def test_deterministic_actions_are_the_squashed_mean() -> None:
    agent = small_agent()
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with torch.no_grad():
        mean = agent.actor(torch.as_tensor(obs))[:, :1]
    np.testing.assert_allclose(agent.act(obs, deterministic=True), 2 * torch.tanh(mean), rtol=1e-5)
    assert not np.allclose(agent.act(obs), agent.act(obs, deterministic=True))


def test_warm_up_acts_uniformly_at_random_until_learning_starts() -> None:
    agent = small_agent(learning_starts=6)
    obs = np.zeros((2, 3), dtype=np.float32)
    warm = [agent.act_info(obs, np.zeros(2, dtype=bool))[0] for _ in range(3)]
    policy = agent.act_info(obs, np.zeros(2, dtype=bool))[0]
    # The policy at one observation is one narrow Gaussian; uniform draws are not.
    assert np.ptp(np.concatenate(warm)) > 1.0
    assert agent.num_timesteps == 0 and policy.shape == (2, 1)


def test_log_prob_matches_torch_distributions() -> None:
    agent = small_agent()
    out = torch.randn(64, 2) * 0.5
    eps = torch.randn(64, 1)
    action, log_prob = agent.squash(out, eps)
    mean, log_std = out.double().chunk(2, dim=-1)  # the textbook formula, in float64
    u = mean + log_std.exp() * eps.double()
    base = torch.distributions.Normal(mean, log_std.exp())
    expected = (base.log_prob(u) - torch.log1p(-(torch.tanh(u) ** 2))).sum(-1)
    torch.testing.assert_close(action, torch.tanh(u).float())
    torch.testing.assert_close(log_prob, expected.float(), rtol=1e-4, atol=1e-4)


# ---- gSDE (use_sde) ----------------------------------------------------------------


class TestSACGSDEConformance(GSDEConformance):
    backend = "torch"

    def actor_outputs(self, agent, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.actor(torch.as_tensor(obs)).numpy()


def sde_agent(seed: int = 0, **hp) -> TorchSACAgent:
    hp = {"use_sde": True, "log_std_init": -1.0, "learning_starts": 0, **hp}
    return make_sac(OBS, ACT, hyperparams=hp, device="cpu", seed=seed, hidden=(32, 32))


def test_sde_log_prob_matches_torch_distributions() -> None:
    agent = sde_agent()
    out = torch.cat([torch.randn(64, 1), torch.rand(64, 32)], dim=-1)
    eps = torch.randn(32, 1)
    action, log_prob = agent.sde_squash(out, eps)
    std = agent._sde.log_std.detach().double().exp()
    mean, z = out.double()[:, :1], out.double()[:, 1:]
    u = mean + z @ (std * eps.double())
    base = torch.distributions.Normal(mean, torch.sqrt(z.square() @ std.square() + 1e-6))
    expected = (base.log_prob(u) - torch.log1p(-(torch.tanh(u) ** 2))).sum(-1)
    torch.testing.assert_close(action, torch.tanh(u).float())
    torch.testing.assert_close(log_prob, expected.float(), rtol=1e-4, atol=1e-4)


def test_sde_refuses_an_actor_without_its_head() -> None:
    with pytest.raises(ValueError, match="use_sde=True, but the actor has no StateDependentNoise"):
        TorchSACAgent(mlp(3, 2, (8,)), mlp(4, 1, (8,)), mlp(4, 1, (8,)), action_space=ACT,
                      hyperparams={"use_sde": True}, device="cpu")  # fmt: skip


# ---- the update schedule ------------------------------------------------------


def test_updates_follow_train_freq_gradient_steps_and_learning_starts() -> None:
    agent = small_agent(learning_starts=40, train_freq=3, gradient_steps=2, batch_size=16)
    window = collect(agent, window=30, n_envs=2)[0]  # 60 transitions
    agent.learn(window)
    # vector steps t = 1..30; due where t % 3 == 0 and 2t > 40: t = 21, 24, 27, 30
    assert agent.n_updates == 4 * 2
    assert agent.num_timesteps == 60 and agent.vector_steps == 30
    assert len(agent.replay) == 60


# Observation spaces of each kind the replay stores in its own way: float vectors
# (in the float block), uint8 images, and Dict records (a Discrete index and a vector).
NUMBERED_SPACES = {
    "vector": OBS,
    "image": gym.spaces.Box(0, 255, (3, 4, 1), np.uint8),
    "dict": gym.spaces.Dict(
        {"index": gym.spaces.Discrete(256), "vector": gym.spaces.Box(-1e3, 1e3, (2,))}
    ),
}


def numbered_observations(k: np.ndarray, kind: str) -> Any:
    """Observations of ``NUMBERED_SPACES[kind]`` that carry the numbers ``k``."""
    if kind == "image":
        return np.broadcast_to(k[..., None, None, None], (*k.shape, 3, 4, 1)).astype(np.uint8)
    vector = np.repeat(k[..., None], 3 if kind == "vector" else 2, axis=-1).astype(np.float32)
    return vector if kind == "vector" else {"index": k.astype(np.int64), "vector": vector}


def number_of(obs: Any) -> np.ndarray:
    """The numbers a minibatch of ``numbered_observations`` carries (every part agreeing)."""
    parts = obs.values() if isinstance(obs, dict) else [obs]
    numbers = [part.reshape(len(part), -1).float().numpy() for part in parts]
    for part in numbers:
        np.testing.assert_array_equal(part, numbers[0][:, :1].repeat(part.shape[1], axis=1))
    return numbers[0][:, 0]


def numbered_window(first: int, steps: int, n_envs: int, kind: str = "vector") -> EpisodeData:
    """A window whose transitions carry their write order: the k-th transition ever
    written has reward k, observation k (``numbered_observations``) and next
    observation k + N."""
    k = (first + np.arange(steps * n_envs)).reshape(steps, n_envs)
    return EpisodeData(
        observations=numbered_observations(k, kind),
        actions=np.zeros((steps, n_envs, 1), np.float32),
        rewards=k.astype(np.float32),
        terminated=np.zeros((steps, n_envs), bool),
        truncated=np.zeros((steps, n_envs), bool),
        next_observations=numbered_observations(k[-1] + n_envs, kind),
    )


@pytest.mark.parametrize("kind", list(NUMBERED_SPACES))
@pytest.mark.parametrize("pack_bytes", [replay.PACK_BYTES, 1])
def test_an_update_draws_exactly_what_the_buffer_held_after_its_step(
    pack_bytes: int, kind: str, monkeypatch
) -> None:
    """SB3 samples between environment steps; optix samples after the window, as if it
    had: never a transition written after the update's step, even where the window
    wraps round the buffer (16 slots: the second window overwrites slots the first
    window's transitions held, the third is larger than the buffer). The window's
    minibatches reach the device in one move, or (``pack_bytes`` 1) one per update;
    so for vectors, images and Dict observations alike."""
    monkeypatch.setattr(replay, "PACK_BYTES", pack_bytes)
    capacity, n_envs, gradient_steps = 16, 2, 2
    hp = {"learning_starts": 0, "train_freq": 2, "gradient_steps": gradient_steps}
    hp |= {"batch_size": 512, "replay_capacity": capacity}  # 512 draws of 16: each is drawn
    agent = make_sac(NUMBERED_SPACES[kind], ACT, hyperparams=hp, device="cpu", hidden=(32, 32))
    written = 0
    for steps in (6, 5, 20):
        due = [t for t in range(1, steps + 1) if (agent.vector_steps + t) % 2 == 0]
        batches = list(agent.replay_batches(numbered_window(written, steps, n_envs, kind)))
        assert len(batches) == len(due) * gradient_steps
        for t, batch in zip(np.repeat(due, gradient_steps), batches, strict=True):
            end = written + t * n_envs  # transitions written by the end of step t
            drawn = batch.rewards.numpy()
            assert set(drawn.tolist()) == set(range(max(0, end - capacity), end)), t
            # Every field of a drawn transition comes from the same transition.
            np.testing.assert_array_equal(number_of(batch.observations), drawn)
            np.testing.assert_array_equal(number_of(batch.next_observations), drawn + n_envs)
        written += steps * n_envs
    held = agent.replay.buffer.get(np.arange(capacity))["rewards"]
    np.testing.assert_array_equal(np.sort(held), np.arange(written - capacity, written))


def test_a_window_reaches_the_device_in_one_move(monkeypatch) -> None:
    """The default window's minibatches (256 updates of 256 transitions) are one
    host-to-device copy; their noise is drawn in one go as well."""
    moves, pack_to_device = [], replay.pack_to_device

    def counted(parts, device):
        moves.append(sum(a.size for arrays in parts.values() for a in arrays))
        return pack_to_device(parts, device)

    monkeypatch.setattr(replay, "pack_to_device", counted)
    agent = small_agent(learning_starts=0)
    batches = list(agent.replay_batches(numbered_window(0, 256, n_envs=1)))
    assert len(batches) == 256
    assert moves == [256 * 256 * (3 + 1 + 1 + 3 + 1)]  # s, a, r, s′, γ(1 − d)


def test_no_update_before_learning_starts_reports_no_losses() -> None:
    agent = small_agent(learning_starts=1_000)
    stats = agent.learn(collect(agent)[0])
    assert agent.n_updates == 0
    assert "critic_loss" not in stats and stats["replay_size"] == 100


# ---- observations through the policy layer -----------------------------------

IMAGE_ENV, DICT_ENV, DISCRETE_ENV = toy_envs.POINTER_ENVS


def pointer_agent(env_id: str, seed: int = 0, **kwargs: Any) -> TorchSACAgent:
    env = gym.make(env_id)
    hp = {"learning_starts": 0, "batch_size": 32}
    return make_sac(
        env.observation_space, env.action_space, hyperparams=hp, device="cpu", seed=seed, **kwargs
    )


def pointer_window(agent, env_id: str, window: int = 24, n_envs: int = 2) -> EpisodeData:
    return collect_windows(agent, env_id, 1, n_envs, window, seed=0)[0]


def test_images_are_stored_once_as_uint8_and_reach_the_networks_as_uint8() -> None:
    """Pixels stay uint8 from the window to the network (the CNN scales them): the
    replay holds each frame once (one per step, plus the one after the window and
    each episode's last), and minibatches cross to the device as uint8."""
    agent = pointer_agent(IMAGE_ENV)
    window = pointer_window(agent, IMAGE_ENV)
    batches = list(agent.replay_batches(window))
    assert isinstance(agent.replay.buffer, CompactReplayBuffer)
    assert agent.replay.buffer.fields["observations"].dtype == np.uint8
    episode_ends = int(window.dones.sum())
    assert agent.replay.buffer.observations_written == window.n_steps + 2 + episode_ends
    assert batches[0].observations.dtype == batches[0].next_observations.dtype == torch.uint8
    assert batches[0].observations.shape == (32, 5, 10, 1)
    stored = agent.replay.buffer.get(np.arange(window.n_steps))["observations"]
    np.testing.assert_array_equal(stored, window.observations.reshape(-1, 5, 10, 1))


def test_dict_observations_reach_the_networks_as_a_dict_of_tensors() -> None:
    """A Dict observation is one record per step in replay and a dict again on the
    device: the Discrete index an integer tensor, the Box a float32 one."""
    agent = pointer_agent(DICT_ENV)
    window = pointer_window(agent, DICT_ENV)
    batch = next(iter(agent.replay_batches(window)))
    for obs in (batch.observations, batch.next_observations):
        assert obs.keys() == {"target", "shift"}
        assert obs["target"].dtype == torch.int64 and obs["target"].shape == (32,)
        assert obs["shift"].dtype == torch.float32 and obs["shift"].shape == (32, 1)
    stored = agent.replay.buffer.get(np.arange(window.n_steps))["observations"]
    np.testing.assert_array_equal(stored["target"], window.observations["target"].reshape(-1))
    np.testing.assert_array_equal(stored["shift"], window.observations["shift"].reshape(-1, 1))


def test_refuses_observation_spaces_no_default_network_reads() -> None:
    with pytest.raises(
        ValueError, match="sac reads Box, Discrete, MultiDiscrete, MultiBinary or Dict observations"
    ):
        make_sac(gym.spaces.Tuple((gym.spaces.Discrete(2),)), ACT)


# ---- the user's networks ---------------------------------------------------------


class TinyCNN(nn.Module):
    """A user's features extractor for ``PointAtImage``'s 5×10×1 uint8 pixels."""

    def __init__(self, features: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.linear = nn.Linear(4 * 3 * 8, features)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.permute(0, 3, 1, 2).float() / 255.0
        return torch.relu(self.linear(torch.relu(self.conv(x)).flatten(1)))


def parameters(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def all_changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return all(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


def test_a_custom_features_extractor_trains_in_the_actor_and_a_copy_in_the_critics() -> None:
    """SB3's ``share_features_extractor=False``: the actor trains the extractor it was
    given, the critics their own copy of it (and the target critics follow theirs)."""
    agent = pointer_agent(IMAGE_ENV, extractor=TinyCNN(), hidden=(32, 32))
    actor_cnn, critic_cnn = agent.actor.extractor, agent.critic.extractor
    assert isinstance(critic_cnn, TinyCNN) and critic_cnn is not actor_cnn
    before = parameters(actor_cnn), parameters(critic_cnn), parameters(agent.critic_target)
    stats = agent.learn(pointer_window(agent, IMAGE_ENV))
    assert all(math.isfinite(v) for v in stats.values())
    assert all_changed(before[0], actor_cnn) and all_changed(before[1], critic_cnn)
    assert all_changed(before[2], agent.critic_target)


def test_the_users_own_networks_train_on_images() -> None:
    """tensor-optix's constructor on images: the user's actor (its own CNN) and
    critics over ``[φ(s) ‖ a]``, φ the user's ``critic_extractor``."""
    env = gym.make(IMAGE_ENV)
    actor = nn.Sequential(TinyCNN(), nn.Linear(16, 2))  # [mean ‖ log_std]
    critic1, critic2 = (mlp(16 + 1, 1, (32,), nn.ReLU) for _ in range(2))
    cnn = TinyCNN()
    agent = TorchSACAgent(
        actor,
        critic1,
        critic2,
        critic_extractor=cnn,
        hyperparams={"learning_starts": 0, "batch_size": 32},
        device="cpu",
        observation_space=env.observation_space,
        action_space=env.action_space,
    )
    before = [parameters(m) for m in (actor, critic1, critic2, cnn)]
    stats = agent.learn(pointer_window(agent, IMAGE_ENV))
    assert all(math.isfinite(v) for v in stats.values())
    assert all(
        all_changed(b, m) for b, m in zip(before, (actor, critic1, critic2, cnn), strict=True)
    )


def test_refuses_user_networks_that_do_not_fit_the_observations() -> None:
    env = gym.make(IMAGE_ENV)
    spaces = {"observation_space": env.observation_space, "action_space": env.action_space}
    with pytest.raises(ValueError, match=r"the actor network does not take observations from Box"):
        TorchSACAgent(mlp(3, 2), critics=TwinQ(17), critic_extractor=TinyCNN(), **spaces)
    actor = nn.Sequential(TinyCNN(), nn.Linear(16, 2))
    # The critics read 16 features and 1 action, not the flattened 50 pixels and 1 action.
    with pytest.raises(ValueError, match="twin critic network does not take inputs of width 17"):
        TorchSACAgent(actor, critics=TwinQ(51), critic_extractor=TinyCNN(), **spaces)
    critic1, critic2, cnn = mlp(17, 1), mlp(17, 1), TinyCNN()
    critic_only = torch.optim.Adam([*critic1.parameters(), *critic2.parameters()])
    with pytest.raises(ValueError, match="critic optimizer lacks 4 of the critic's parameter"):
        TorchSACAgent(
            actor, critic1, critic2, critic_optimizer=critic_only, critic_extractor=cnn, **spaces
        )


# ---- hyperparameters take effect at once ------------------------------------


def test_learning_rate_reaches_every_optimizer() -> None:
    agent = small_agent()
    agent.set_hyperparams(HyperparamSet({"learning_rate": 2.5e-4}))
    for optimizer in agent.optimizers().values():
        assert all(group["lr"] == 2.5e-4 for group in optimizer.param_groups)


def test_a_fixed_entropy_coefficient_is_used_as_given() -> None:
    agent = small_agent(learning_starts=0)
    agent.set_hyperparams(HyperparamSet({"auto_ent_coef": False, "ent_coef": 0.05}))
    stats = agent.learn(collect(agent)[0])
    assert stats["ent_coef"] == pytest.approx(0.05)
    agent.set_hyperparams(HyperparamSet({"auto_ent_coef": True}))
    stats = agent.learn(collect(agent, seed=1)[0])
    assert stats["ent_coef"] != pytest.approx(0.05)  # learned from 0.05 on


def test_automatic_temperature_falls_when_entropy_is_above_target() -> None:
    # A fresh policy (σ ≈ 1) has entropy far above −dim(A) = −1: α must shrink.
    agent = small_agent(learning_starts=0, learning_rate=1e-2)
    stats = agent.learn(collect(agent)[0])
    assert stats["ent_coef"] < 1.0


def test_replay_capacity_change_keeps_the_newest_transitions() -> None:
    agent = small_agent(learning_starts=10_000)
    agent.learn(collect(agent)[0])
    newest = agent.replay.buffer.get(np.arange(60, 100))["observations"]
    agent.set_hyperparams(HyperparamSet({"replay_capacity": 40}))
    assert agent.replay.capacity == 40 and len(agent.replay) == 40
    np.testing.assert_array_equal(agent.replay.buffer.get(np.arange(40))["observations"], newest)


# ---- equal to Stable-Baselines3 ---------------------------------------------


def sb3_actor_layout(actor: nn.Module, action_dim: int) -> list[torch.Tensor]:
    """optix's ``[mean || log_std]`` MLP as SB3's actor parameters, in their order:
    ``latent_pi``'s layers, then the separate ``mu`` and ``log_std`` heads (optix's
    last layer, split by rows)."""
    *body, head = [m for m in actor.modules() if isinstance(m, nn.Linear)]
    return [
        *(t for layer in body for t in (layer.weight, layer.bias)),
        *(head.weight[:action_dim], head.bias[:action_dim]),
        *(head.weight[action_dim:], head.bias[action_dim:]),
    ]


@pytest.mark.parametrize("auto_ent_coef", [True, False])
def test_gradient_steps_equal_stable_baselines3(auto_ent_coef: bool, monkeypatch) -> None:
    """SB3's SAC and optix's, built with the same weights and settings, fed the same
    minibatches and the same reparameterisation noise ε: after each of two gradient
    steps (temperature, critics, actor, Polyak) every parameter is the same, actor,
    critics, target critics and log α. SB3 draws ε from torch's global generator
    (Normal.rsample: first for a ~ π(·|s), then for a′ ~ π(·|s′)), seeded anew before
    each step. What optix does differently on purpose shows only in float rounding:
    an exact log(1 − tanh²u) where SB3 adds 1e-6 inside the log, both critics in one
    fused network (its weights copied in above), a fused Adam kernel, one lerp for
    Polyak, and α's and the actor's gradients without the parts SB3 throws away."""
    hidden, batch_size = (32, 32), 64
    hp = {"learning_rate": 1e-3, "gamma": 0.98, "tau": 0.05, "batch_size": batch_size}
    hp |= {"auto_ent_coef": auto_ent_coef, "ent_coef": 0.5}
    agent = make_sac(OBS, ACT, hyperparams=hp, device="cpu", seed=0, hidden=hidden)
    initial = [p.detach().clone() for p in agent.actor.parameters()]
    generator = torch.Generator().manual_seed(1)
    with torch.random.fork_rng(devices=[]):  # SB3 draws from torch's global generator
        model = sb3_model(SAC, agent, hp, hidden, ent_coef="auto_0.5" if auto_ent_coef else 0.5)
        copy_parameters(model.actor.parameters(), sb3_actor_layout(agent.actor, 1))

        def draw_noise() -> torch.Tensor:  # ε for a ~ π(·|s), then for a′ ~ π(·|s′)
            return torch.stack([torch.empty(batch_size, 1).normal_() for _ in range(2)])

        for step in range(2):
            log_alpha = agent.temperature.log_alpha.item()
            stats = gradient_step_side_by_side(
                model, agent, generator, 100 + step, draw_noise, monkeypatch
            )

            # The losses too: Adam's step hardly depends on a loss's scale.
            logged = model.logger.name_to_value
            for key in ("critic_loss", "actor_loss"):
                assert stats[key] == pytest.approx(logged[f"train/{key}"], rel=1e-5), key
            if auto_ent_coef:  # SB3's −log α·E[log π(a|s) + H̄], from optix's −E[log π]
                temperature_loss = -log_alpha * (-stats["entropy"] + agent.target_entropy)
                # rel 1e-4: SB3's 1e-6 inside log(1 − tanh²u) shows where |u| is large
                assert temperature_loss == pytest.approx(logged["train/ent_coef_loss"], rel=1e-4)
                # and its gradient, which optix sets in closed form
                torch.testing.assert_close(
                    agent.temperature.log_alpha.grad, model.log_ent_coef.grad, rtol=1e-4, atol=0
                )
            assert_equal_parameters(model.actor.parameters(), sb3_actor_layout(agent.actor, 1))
            assert_equal_critics(model, agent)
            sb3_log_alpha = model.log_ent_coef if auto_ent_coef else model.ent_coef_tensor.log()
            assert_equal_parameters([sb3_log_alpha.reshape(1)], [agent.temperature.log_alpha])
    # Not a comparison of networks that never moved:
    assert all(
        not torch.equal(a, b) for a, b in zip(initial, agent.actor.parameters(), strict=True)
    )
    log_alpha = agent.temperature.log_alpha.item()
    assert (log_alpha != pytest.approx(math.log(0.5), abs=1e-6)) == auto_ent_coef


def test_sde_gradient_steps_equal_stable_baselines3(monkeypatch) -> None:
    """SB3's SAC with use_sde and optix's, the same weights (parameters in the same
    order: log σ, the latent MLP, the mean) and the same θ_ε (SB3's reset_noise draws
    it first at each gradient step): after each of two steps every parameter is the
    same, log σ included."""
    hidden, batch_size = (32, 32), 64
    hp = {"learning_rate": 1e-3, "gamma": 0.98, "tau": 0.05, "batch_size": batch_size}
    hp |= {"auto_ent_coef": True, "ent_coef": 0.5, "use_sde": True, "log_std_init": -2.0}
    agent = make_sac(OBS, ACT, hyperparams=hp, device="cpu", seed=0, hidden=hidden)
    initial = [p.detach().clone() for p in agent.actor.parameters()]
    generator = torch.Generator().manual_seed(1)
    with torch.random.fork_rng(devices=[]):
        model = sb3_model(
            SAC, agent, hp, hidden, ent_coef="auto_0.5", use_sde=True,
            policy_kwargs={"log_std_init": -2.0},
        )  # fmt: skip
        copy_parameters(model.actor.parameters(), agent.actor.parameters())

        def draw_noise() -> torch.Tensor:  # θ_ε's standard normal, [dim z, dim A]
            return torch.empty(hidden[-1], 1).normal_()

        for step in range(2):
            gradient_step_side_by_side(model, agent, generator, 200 + step, draw_noise, monkeypatch)
            assert_equal_parameters(model.actor.parameters(), agent.actor.parameters())
            assert_equal_critics(model, agent)
    assert all(
        not torch.equal(a, b) for a, b in zip(initial, agent.actor.parameters(), strict=True)
    )


# ---- checkpoints ----------------------------------------------------------------


def test_resume_keeps_the_replay_buffer_and_continues_exactly(tmp_path) -> None:
    first, second = collect(small_agent(), windows=2)
    agent = small_agent(learning_starts=50)
    agent.learn(first)
    resumed = resume(agent, small_agent(seed=7), tmp_path)  # the same replay, field by field
    assert (tmp_path / "ckpt" / "replay.npz").is_file()
    assert len(resumed.replay) == len(agent.replay) == 100
    assert resumed.num_timesteps == agent.num_timesteps
    # Same weights, targets, optimizer moments, temperature and random streams:
    # the next update is the same update.
    assert resumed.learn(second) == agent.learn(second)


@pytest.mark.parametrize("env_id", [IMAGE_ENV, DICT_ENV])
def test_resume_keeps_image_and_dict_replay(env_id: str, tmp_path) -> None:
    """uint8 frames and Dict records come back from ``replay.npz`` as they were stored."""
    agent = pointer_agent(env_id)
    first, second = (pointer_window(agent, env_id) for _ in range(2))
    agent.learn(first)
    resumed = resume(agent, pointer_agent(env_id, seed=7), tmp_path)
    assert len(resumed.replay) == first.n_steps
    assert resumed.learn(second) == agent.learn(second)


def test_load_refuses_another_architecture(tmp_path) -> None:
    small_agent().save_weights(str(tmp_path / "ckpt"))
    other = make_sac(OBS, ACT, device="cpu", seed=0, hidden=(16, 16))
    with pytest.raises(ValueError, match="does not match"):
        other.load_weights(str(tmp_path / "ckpt"))


# ---- in the loop -----------------------------------------------------------------


def test_runs_in_the_loop_with_online_tuning_and_checkpoints(tmp_path) -> None:
    agent = small_agent(learning_starts=32, batch_size=32)
    seen: list[tuple[float, set[float]]] = []

    class WatchLearningRate(LoopCallback):
        def on_hyperparam_update(self, old, new):
            in_torch = {g["lr"] for o in agent.optimizers().values() for g in o.param_groups}
            seen.append((new.params["learning_rate"], in_torch))

    pipeline = VectorBatchPipeline(env_id="Pendulum-v1", n_envs=2, window_size=32, seed=0)
    RLOptimizer(
        agent,
        pipeline,
        optimizer=SPSAOptimizer(param_bounds={"learning_rate": (1e-4, 1e-2)}, seed=0),
        checkpoint_dir=tmp_path / "checkpoints",
        rollback_on_degradation=True,
        max_episodes=16,  # Pendulum's first episodes end in window 7: scores start there
        callbacks=[WatchLearningRate()],
    ).run()
    assert seen
    for proposed, in_torch in seen:
        assert len(in_torch) == 1 and in_torch.pop() == pytest.approx(proposed)
    assert list((tmp_path / "checkpoints").rglob("replay.npz"))
    assert agent.replay is not None and len(agent.replay) > 0


# ---- learning -------------------------------------------------------------------


@pytest.mark.slow
def test_learns_pendulum() -> None:
    """SAC, ReLU [64, 64], SB3 defaults with lr 1e-3 (rl-zoo's Pendulum setting):
    6,000 steps from one environment in windows of 200 reach ≥ −250."""
    result = learn_pendulum(make_sac, windows=30)
    assert result.mean >= -250, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", toy_envs.POINTER_ENVS)
def test_learns_to_point_at_a_target_shown_as_an_image_a_dict_or_an_index(env_id: str) -> None:
    """SAC, ReLU [64, 64] after the default extractor (SmallCNN on the image, one-hot
    on the index), lr 1e-3, batch 64: 1,920 steps in windows of 64 bring the
    return from about −6 (random; −4.8 for the best pointer blind to the target)
    to ≥ −1.5."""
    result = learn_to_point(make_sac, env_id, windows=30)
    assert result.mean >= -1.5, str(result)
