import math

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
from stable_baselines3 import TD3
from torch import nn

from optix_core import EpisodeData, HyperparamSet, make_agent
from optix_core.hyperparams import HyperparamError
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
from optix_core.testing.learning_runs import collect_windows, learn_and_evaluate
from optix_torch.algorithms.off_policy import TwinQ
from optix_torch.algorithms.td3 import TorchTD3Agent, make_td3
from optix_torch.policies.networks import mlp

torch.set_num_threads(1)


class TestTD3Conformance(AgentConformance):
    algo = "td3"
    backend = "torch"


class TestTD3ObservationSpacesConformance(PointerConformance):
    algo = "td3"
    backend = "torch"


def small_agent(seed: int = 0, **hp) -> TorchTD3Agent:
    return make_td3(OBS, ACT, hyperparams=hp or None, device="cpu", seed=seed, hidden=(32, 32))


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


# ---- bad input --------------------------------------------------------------


def test_refuses_a_discrete_action_space() -> None:
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"td3 acts on Box action spaces, got Discrete\(2\)"):
        make_td3(cartpole.observation_space, cartpole.action_space)
    with pytest.raises(RegistryError):
        make_agent("td3", "CartPole-v1", backend="torch", device="cpu")
    with pytest.raises(ValueError, match="Box action spaces"):
        TorchTD3Agent(mlp(4, 1), critics=TwinQ(5), action_space=cartpole.action_space)


def test_refuses_networks_whose_output_does_not_fit() -> None:
    with pytest.raises(ValueError, match=r"actor network outputs shape \(2,\).*expected \(1,\)"):
        TorchTD3Agent(mlp(3, 2), mlp(4, 1), mlp(4, 1), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match=r"twin critic network outputs shape \(4,\)"):
        TorchTD3Agent(mlp(3, 1), mlp(4, 2), mlp(4, 2), action_dim=1, device="cpu")
    with pytest.raises(ValueError, match="twin critic network does not take inputs of width 4"):
        TorchTD3Agent(mlp(3, 1), critics=TwinQ(6), observation_space=OBS, action_space=ACT)


def test_refuses_bad_hyperparameters() -> None:
    with pytest.raises(HyperparamError, match="policy_delay"):
        small_agent(policy_delay=0)
    with pytest.raises(HyperparamError, match="expl_noise"):
        small_agent(expl_noise=-0.1)
    with pytest.raises(HyperparamError, match="target_noise_clip"):
        small_agent(target_noise_clip=0.5)


# ---- tensor-optix's constructor ---------------------------------------------


def test_tensor_optix_constructor_trains_the_users_networks() -> None:
    torch.manual_seed(0)
    actor = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1), nn.Tanh())
    critic1 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    critic2 = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    agent = TorchTD3Agent(
        actor=actor,
        critic1=critic1,
        critic2=critic2,
        action_dim=1,
        actor_optimizer=torch.optim.Adam(actor.parameters(), lr=3e-4),
        critic_optimizer=torch.optim.Adam([*critic1.parameters(), *critic2.parameters()], lr=3e-4),
        hyperparams=HyperparamSet(
            params={
                "learning_rate": 3e-4,
                "gamma": 0.99,
                "tau": 0.005,
                "batch_size": 64,
                "policy_delay": 2,
                "target_noise": 0.2,
                "noise_clip": 0.5,
                "expl_noise": 0.1,
                "replay_capacity": 10_000,
            }
        ),
        device="cpu",
    )
    before = params(actor), params(critic1), params(critic2)
    stats = agent.learn(collect(agent, window=100)[0])
    assert all(math.isfinite(v) for v in stats.values())
    assert all(changed(b, m) for b, m in zip(before, (actor, critic1, critic2), strict=True))


# ---- acting -------------------------------------------------------------------


def test_exploration_noise_follows_expl_noise() -> None:
    agent = small_agent(expl_noise=0.0)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(agent.act(obs), agent.act(obs, deterministic=True))
    agent.set_hyperparams(HyperparamSet({"expl_noise": 0.3}))
    spread = agent.act(obs) - agent.act(obs, deterministic=True)
    assert 0 < np.abs(spread).max() <= 2 * 4 * 0.3  # within 4σ, in units of the bounds ±2


def test_actions_stay_inside_the_bounds() -> None:
    agent = small_agent(expl_noise=5.0)
    obs = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    for actions in (agent.act(obs), agent.act_info(obs, np.zeros(256, bool))[0]):
        assert actions.dtype == np.float32 and np.all(np.abs(actions) <= 2.0)


# ---- the update ---------------------------------------------------------------


def test_the_actor_and_the_targets_move_every_policy_delay_updates() -> None:
    agent = small_agent(learning_starts=0, batch_size=16, policy_delay=3)
    window = collect(agent, window=2, n_envs=1)[0]
    actor, actor_target, critic_target = (
        params(agent.actor),
        params(agent.actor_target),
        params(agent.critic_target),
    )
    critic = params(agent.critic)
    stats = agent.learn(window)  # updates 1 and 2: critics only
    assert agent.n_updates == 2 and "actor_loss" not in stats
    assert changed(critic, agent.critic)
    assert not changed(actor, agent.actor) and not changed(actor_target, agent.actor_target)
    assert not changed(critic_target, agent.critic_target)
    stats = agent.learn(collect(agent, window=1, n_envs=1, seed=1)[0])  # update 3
    assert agent.n_updates == 3 and math.isfinite(stats["actor_loss"])
    assert changed(actor, agent.actor) and changed(actor_target, agent.actor_target)
    assert changed(critic_target, agent.critic_target)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_polyak_averaging_records_no_graph_into_the_targets(algo) -> None:
    """θ̄ ← τθ + (1 − τ)θ̄ under autograd made every target parameter a node
    that led back to θ and to its own previous value: a graph one update longer
    every update, held for the whole run."""
    agent = make_agent(
        algo, "Pendulum-v1", backend="torch", device="cpu", seed=0,
        hyperparams={"learning_starts": 0, "batch_size": 16},
    )  # fmt: skip
    for window in collect(agent, window=8, n_envs=1):
        agent.learn(window)
    assert agent.n_updates >= 4
    for name, module in agent.modules().items():
        if "target" in name:
            for p in module.parameters():
                assert p.is_leaf and not p.requires_grad, name


def test_gradient_steps_equal_stable_baselines3(monkeypatch) -> None:
    """SB3's TD3 and optix's, built with the same weights and settings, fed the same
    minibatches and the same target-smoothing noise: after each of four gradient steps
    (critics every step; actor and Polyak targets every policy_delay = 2) every
    parameter is the same, actor, critics and both targets. SB3 draws the noise with
    ``normal_(0, σ̃)`` from torch's global generator, seeded anew before each step;
    optix's ε is the standard normal draw of the same seed, scaled by σ̃. What optix
    does differently on purpose shows only in float rounding: both critics in one
    fused network (its weights copied in above), a fused Adam kernel, one lerp for
    Polyak, and no critic weight gradients under the actor's loss."""
    hidden, batch_size, delay = (32, 32), 64, 2
    hp = {"learning_rate": 1e-3, "gamma": 0.98, "tau": 0.05, "batch_size": batch_size}
    hp |= {"policy_delay": delay, "target_noise": 0.3, "noise_clip": 0.4}
    agent = make_td3(OBS, ACT, hyperparams=hp, device="cpu", seed=0, hidden=hidden)
    initial = params(agent.actor), params(agent.actor_target)
    generator = torch.Generator().manual_seed(1)
    with torch.random.fork_rng(devices=[]):  # SB3 draws from torch's global generator
        model = sb3_model(
            TD3,
            agent,
            hp,
            hidden,
            policy_delay=delay,
            target_policy_noise=hp["target_noise"],
            target_noise_clip=hp["noise_clip"],
        )
        copy_parameters(model.actor.parameters(), agent.actor.parameters())  # the same layers
        model.actor_target.load_state_dict(model.actor.state_dict())

        def draw_noise() -> torch.Tensor:  # ε of the target smoothing noise σ̃ε
            return torch.empty(batch_size, 1).normal_()

        for step in range(1, 2 * delay + 1):
            stats = gradient_step_side_by_side(
                model, agent, generator, 100 + step, draw_noise, monkeypatch
            )

            # The losses too: Adam's step hardly depends on a loss's scale.
            logged = model.logger.name_to_value
            assert stats["critic_loss"] == pytest.approx(logged["train/critic_loss"], rel=1e-5)
            assert ("actor_loss" in stats) == (step % delay == 0)
            if step % delay == 0:
                assert stats["actor_loss"] == pytest.approx(logged["train/actor_loss"], rel=1e-5)
            assert_equal_critics(model, agent)
            assert_equal_parameters(model.actor.parameters(), agent.actor.parameters())
            assert_equal_parameters(
                model.actor_target.parameters(), agent.actor_target.parameters()
            )
    # Not a comparison of networks that never moved:
    assert changed(initial[0], agent.actor) and changed(initial[1], agent.actor_target)


def test_learning_rate_reaches_every_optimizer() -> None:
    agent = small_agent()
    agent.set_hyperparams(HyperparamSet({"learning_rate": 2.5e-4}))
    for optimizer in agent.optimizers().values():
        assert all(group["lr"] == 2.5e-4 for group in optimizer.param_groups)


# ---- observations and the user's networks -------------------------------------

IMAGE_ENV = "optix-tests/PointAtImage-v0"


class PixelMLP(nn.Module):
    """A user's features extractor: ``PointAtImage``'s 5×10 uint8 pixels scaled, one layer."""

    def __init__(self, features: int = 16) -> None:
        super().__init__()
        self.linear = nn.Linear(5 * 10, features)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(obs.flatten(1).float() / 255.0))


def image_window(agent, window: int = 24) -> EpisodeData:
    return collect_windows(agent, IMAGE_ENV, 1, n_envs=2, window=window, seed=0)[0]


def test_a_custom_extractor_trains_with_both_targets_following() -> None:
    """The actor's extractor, the critics' copy, and the two target copies (TD3's
    actor target holds the actor's extractor too) all move."""
    env = gym.make(IMAGE_ENV)
    hp = {"learning_starts": 0, "batch_size": 32, "policy_delay": 1}
    agent = make_td3(
        env.observation_space,
        env.action_space,
        hyperparams=hp,
        device="cpu",
        seed=0,
        hidden=(32, 32),
        extractor=PixelMLP(),
    )
    extractors = (
        agent.actor.extractor,
        agent.critic.extractor,
        agent.actor_target.extractor,
        agent.critic_target.extractor,
    )
    assert len({id(e) for e in extractors}) == 4
    before = [params(e) for e in extractors]
    stats = agent.learn(image_window(agent))
    assert all(math.isfinite(v) for v in stats.values())
    assert all(changed(b, e) for b, e in zip(before, extractors, strict=True))


# ---- checkpoints ----------------------------------------------------------------


def test_resume_keeps_the_replay_buffer_and_continues_exactly(tmp_path) -> None:
    first, second = collect(small_agent(), windows=2)
    agent = small_agent(learning_starts=50)
    agent.learn(first)
    resumed = resume(agent, small_agent(seed=7), tmp_path)  # the same replay, field by field
    assert len(resumed.replay) == len(agent.replay) == 100
    assert resumed.n_updates == agent.n_updates  # keeps the policy_delay phase
    assert resumed.learn(second) == agent.learn(second)


def test_ou_exploration_goes_on_from_where_a_checkpoint_left_it(tmp_path) -> None:
    """With ou_noise, training explores with a process per environment: a resumed
    agent's next training actions are the original's (the process's state and the
    generator both come back)."""
    agent = small_agent(ou_noise=True, learning_starts=0)
    obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    running = np.zeros(2, dtype=bool)
    for _ in range(5):
        agent.act_info(obs, running)
    agent.save_weights(str(tmp_path / "ckpt"))
    resumed = small_agent(seed=7, ou_noise=True, learning_starts=0)
    resumed.load_weights(str(tmp_path / "ckpt"))
    for _ in range(3):
        np.testing.assert_array_equal(
            resumed.act_info(obs, running)[0], agent.act_info(obs, running)[0]
        )


# ---- learning -------------------------------------------------------------------


@pytest.mark.slow
def test_learns_pendulum() -> None:
    """TD3, ReLU [64, 64], SB3 defaults with exploration noise 0.1 and lr 1e-3:
    8,000 steps from one environment in windows of 200 reach ≥ −250."""
    result = learn_pendulum(make_td3, windows=40)
    assert result.mean >= -250, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", toy_envs.POINTER_ENVS)
def test_learns_to_point_at_a_target_shown_as_an_image_a_dict_or_an_index(env_id: str) -> None:
    """TD3, ReLU [64, 64] after the default extractor, lr 3e-4, batch 64: 1,920 steps
    in windows of 64 bring the return from about −6 (random; −4.8 for the best
    pointer blind to the target) to ≥ −1.5. (At lr 1e-3 the tanh actor saturates
    at a bound on the image within a window on two seeds of three, on either
    backend, and stays there: −8.4. At 3e-4, seeds 0–2 reach −0.2 to −1.0.)"""
    result = learn_to_point(make_td3, env_id, windows=30, learning_rate=3e-4)
    assert result.mean >= -1.5, str(result)


@pytest.mark.slow
def test_the_users_own_networks_learn_on_images() -> None:
    """tensor-optix's constructor with the user's networks on pixels: an actor with its
    own extractor, two critics over [φ(s) ‖ a] with φ the user's ``critic_extractor``."""
    env = gym.make(IMAGE_ENV)
    torch.manual_seed(0)
    actor = nn.Sequential(PixelMLP(), *mlp(16, 1, (64,), nn.ReLU), nn.Tanh())
    critic1, critic2 = (mlp(16 + 1, 1, (64, 64), nn.ReLU) for _ in range(2))
    agent = TorchTD3Agent(
        actor,
        critic1,
        critic2,
        critic_extractor=PixelMLP(),
        hyperparams={"learning_rate": 1e-3, "batch_size": 64},
        device="cpu",
        seed=0,
        observation_space=env.observation_space,
        action_space=env.action_space,
    )
    result = learn_and_evaluate(agent, IMAGE_ENV, windows=20, window_size=64)
    assert result.mean >= -1.5, str(result)
