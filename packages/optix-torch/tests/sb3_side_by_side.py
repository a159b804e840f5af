"""Stable-Baselines3's SAC or TD3 side by side with optix's: the same weights, the same
minibatches and the same noise, one gradient step each, then every parameter compared.
Used by test_sac.py and test_td3.py."""

from collections.abc import Callable, Iterable
from typing import Any

import torch  # before SB3, so nothing can import tensorflow first (see DESIGN.md)
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from optix_torch.algorithms.off_policy import Batch, TwinQ


def sb3_model(
    algorithm: type[OffPolicyAlgorithm],
    agent: Any,
    hp: dict[str, Any],
    hidden: tuple[int, ...],
    **kwargs: Any,
) -> OffPolicyAlgorithm:
    """SB3's ``algorithm`` on Pendulum with the learning rate, γ, τ and batch size of
    optix's hyperparameters ``hp``, ``hidden`` layers, on the CPU and logging nowhere;
    ``kwargs`` are the algorithm's own settings (``policy_kwargs`` join ``net_arch``). Its critic and target critic start from
    ``agent``'s twin critic weights; its actor is left for the caller to copy in."""
    model = algorithm(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=hp["learning_rate"],
        gamma=hp["gamma"],
        tau=hp["tau"],
        batch_size=hp["batch_size"],
        policy_kwargs={"net_arch": list(hidden), **kwargs.pop("policy_kwargs", {})},
        device="cpu",
        **kwargs,
    )
    model.set_logger(Logger(folder=None, output_formats=[]))
    copy_parameters(model.critic.parameters(), sb3_critic_layout(agent.critic.heads))
    model.critic_target.load_state_dict(model.critic.state_dict())
    return model


def sb3_critic_layout(critics: TwinQ) -> list[torch.Tensor]:
    """TwinQ as SB3's ContinuousCritic parameters, in their order (``qf0``'s layers,
    then ``qf1``'s): TwinQ stacks both critics' layers as weights ``[2, fan_in,
    fan_out]`` (it computes x @ W) and biases ``[2, 1, fan_out]``; ``nn.Linear``
    holds ``[fan_out, fan_in]``."""
    layers = list(zip(critics.weights, critics.biases, strict=True))
    return [t for j in range(2) for weight, bias in layers for t in (weight[j].T, bias[j, 0])]


def copy_parameters(destination: Iterable[torch.Tensor], source: Iterable[torch.Tensor]) -> None:
    """Copy ``source``'s values into ``destination``'s tensors, one for one."""
    with torch.no_grad():
        for p, value in zip(destination, source, strict=True):
            p.copy_(value)


def assert_equal_parameters(sb3: Iterable[torch.Tensor], optix: Iterable[torch.Tensor]) -> None:
    """Each of optix's tensors equals SB3's, one for one, up to float rounding."""
    for a, b in zip(sb3, optix, strict=True):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-6)


def assert_equal_critics(model: OffPolicyAlgorithm, agent: Any) -> None:
    """SB3's critic and target critic equal optix's (``assert_equal_parameters``)."""
    assert_equal_parameters(model.critic.parameters(), sb3_critic_layout(agent.critic.heads))
    assert_equal_parameters(
        model.critic_target.parameters(), sb3_critic_layout(agent.critic_target.heads)
    )


def random_minibatch(generator: torch.Generator, batch_size: int) -> ReplayBufferSamples:
    """Pendulum-shaped transitions, actions in (−1, 1), a quarter of them terminal."""
    obs, next_obs = torch.randn(2, batch_size, 3, generator=generator)
    actions = torch.rand(batch_size, 1, generator=generator) * 2 - 1
    rewards = torch.randn(batch_size, 1, generator=generator)
    terminated = (torch.rand(batch_size, 1, generator=generator) < 0.25).float()
    return ReplayBufferSamples(obs, actions, next_obs, terminated, rewards)


def sb3_gradient_step(model: OffPolicyAlgorithm, sample: ReplayBufferSamples, monkeypatch) -> None:
    """One gradient step of SB3's ``train``, its replay buffer handing out ``sample``."""
    monkeypatch.setattr(model.replay_buffer, "sample", lambda *args, **kwargs: sample)
    model.train(gradient_steps=1, batch_size=len(sample.rewards))


def optix_gradient_step(
    agent, sample: ReplayBufferSamples, noise: torch.Tensor, monkeypatch
) -> dict[str, float]:
    """One gradient step of optix's ``learn``, ``replay_batches`` handing out ``sample``."""
    batch = Batch(
        sample.observations,
        sample.actions,
        sample.rewards[:, 0],
        sample.next_observations,
        agent.hp["gamma"] * (1 - sample.dones[:, 0]),
        noise,
    )
    monkeypatch.setattr(agent, "replay_batches", lambda data: iter([batch]))
    return agent.learn(None)  # the window is never read


def gradient_step_side_by_side(
    model: OffPolicyAlgorithm,
    agent: Any,
    generator: torch.Generator,
    seed: int,
    draw_noise: Callable[[], torch.Tensor],
    monkeypatch,
) -> dict[str, float]:
    """One gradient step of SB3's and one of optix's on the same ``random_minibatch``
    (drawn from ``generator``) with the same noise: SB3 draws its own from torch's
    global generator seeded with ``seed``; optix gets ``draw_noise()``'s draw from that
    generator seeded the same. Returns optix's stats."""
    sample = random_minibatch(generator, agent.hp["batch_size"])
    torch.manual_seed(seed)
    noise = draw_noise()
    torch.manual_seed(seed)
    sb3_gradient_step(model, sample, monkeypatch)
    return optix_gradient_step(agent, sample, noise, monkeypatch)
