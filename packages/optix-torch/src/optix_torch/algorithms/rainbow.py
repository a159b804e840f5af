"""TorchRainbowDQNAgent: Rainbow DQN, and its network RainbowQNetwork.

Hessel et al. (2018), "Rainbow: Combining Improvements in Deep Reinforcement
Learning": six extensions of DQN in one agent.

- Distributional (C51; Bellemare et al. 2017): the network gives, per action,
  a categorical distribution p_i(s, a) over the atoms z_i = v_min + i·Δz,
  Δz = (v_max − v_min)/(N − 1); Q(s, a) = Σ_i z_i p_i(s, a).
- Double Q (van Hasselt et al. 2016): a* = argmax_a Q_online(s', a); its
  distribution comes from the target network.
- n-step returns: R = Σ_{k<m} γ^k r_{t+k}, bootstrap discount γ^m (optix-core's
  NStepWriter builds the transitions).
- The target: each atom moves to T z_i = clip(R + γ^m (1 − terminated) z_i,
  v_min, v_max) and its probability p_i(s', a*) is split between the two
  neighbouring atoms (Bellemare et al. 2017, Algorithm 1), giving m.
- The loss is the cross-entropy L = −Σ_i m_i log p_i(s, a), weighted by the
  importance weights (N·P(i))^−β / max_j w_j of prioritized replay (Schaul et
  al. 2016), whose new priorities are the per-sample losses; β goes linearly
  from ``per_beta`` to 1 over ``per_beta_steps`` env steps.
- Dueling (Wang et al. 2016): logits(s, a) = V(s) + A(s, a) − mean_a A(s, a),
  per atom, before the softmax over atoms.
- Noisy nets (Fortunato et al. 2018, ``NoisyLinear``) explore instead of
  ε-greedy. The online network's noise is redrawn before every gradient step
  (one draw serves both s and s') and every training action, the target
  network's before every gradient step, all from the agent's ``generator``;
  act() draws from ``act_generator``, and act(deterministic=True) uses the
  mean weights alone. Until ``learning_starts`` env steps have been stored
  the training actions are uniformly random (as Stable-Baselines3's
  off-policy agents do): without that start the noisy network's first,
  nearly deterministic policy fills the buffer with one kind of experience
  and CartPole-v1 stalls near 150.
- The default optimizer is Adam with ε = 1.5e-4 (Hessel et al. 2018, Table
  1) rather than torch's 1e-8: Adam's step is lr · m̂ / (√v̂ + ε), and the
  larger ε damps the steps of parameters whose gradients are tiny instead of
  scaling them up to the learning rate.

Updates follow DQN's schedule (``gradient_steps`` after every
``train_freq``-th vector step, each minibatch drawn from what was stored by
then), and every ``target_update_freq`` gradient steps the target network
becomes a copy of the online one. The networks' bookkeeping is DQN's
(``algorithms.q_learning``); the replay memory, the schedule, checkpointing
and the n-step writer are optix-core's ``off_policy`` (through
``algorithms.replay``). The default network (``make_rainbow``) puts
the dueling, noisy, distributional head on the policy layer's features
extractor for the observation space: flattened vectors, NatureCNN or
SmallCNN for uint8 images, one-hot for Discrete, combined for Dict.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optix_core.algorithms.config import rainbow as config
from optix_core.off_policy import (
    atom_support,
    check_atoms,
    check_n_actions,
    choose_atoms,
    require_discrete,
    returns_log_probs,
    update_due,
    warn_without_noisy_layers,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.algorithms.noisy import NoisyLinear, noisy_layers, reset_noise
from optix_torch.algorithms.q_learning import GreedyPolicy, QAgentBase, check_q_network
from optix_torch.policies import observations as O
from optix_torch.policies.extractors import (
    FlattenExtractor,
    default_extractor,
    features_dim,
    orthogonal_init,
)
from optix_torch.policies.networks import seeded


class RainbowQNetwork(nn.Module):
    """Dueling, noisy, distributional Q-network: observations → log-probabilities [B, A, N].

    A features extractor (``extractor``, default ``FlattenExtractor``: the
    observation as a vector of ``obs_dim`` numbers), a linear ReLU trunk of
    ``hidden_size`` units reading its ``obs_dim`` features, then a value
    stream and an advantage stream, each NoisyLinear(hidden) → ReLU →
    NoisyLinear, combined per atom as V + A − mean_a A and normalised over the
    ``n_atoms`` atoms. ``q_values(x)`` gives the expected values Σ_i z_i p_i.
    ``for_space`` builds one on the policy layer's extractor for a space.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_size: int = 128,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        sigma_0: float = 0.5,
        extractor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden_size = int(obs_dim), int(n_actions), hidden_size
        self.n_atoms, self.v_min, self.v_max = check_atoms(n_atoms, v_min, v_max, "RainbowQNetwork")
        self.extractor = FlattenExtractor() if extractor is None else extractor
        self.observation_space: gym.Space | None = None  # set by for_space
        self.features = nn.Sequential(nn.Linear(self.obs_dim, hidden_size), nn.ReLU())
        self.value = nn.Sequential(
            NoisyLinear(hidden_size, hidden_size, sigma_0),
            nn.ReLU(),
            NoisyLinear(hidden_size, self.n_atoms, sigma_0),
        )
        self.advantage = nn.Sequential(
            NoisyLinear(hidden_size, hidden_size, sigma_0),
            nn.ReLU(),
            NoisyLinear(hidden_size, self.n_actions * self.n_atoms, sigma_0),
        )
        support = torch.from_numpy(atom_support(self.n_atoms, self.v_min, self.v_max))
        self.register_buffer("support", support, persistent=False)

    @classmethod
    def for_space(
        cls,
        observation_space: gym.Space,
        n_actions: int,
        extractor: nn.Module | None = None,
        **kwargs: Any,
    ) -> RainbowQNetwork:
        """The network on ``extractor`` (default: ``default_extractor(observation_space)``,
        initialised orthogonally as the policy layer's networks are); ``kwargs`` as the
        constructor's. It keeps ``observation_space`` to be probed with."""
        if extractor is None:
            extractor = default_extractor(observation_space)
            orthogonal_init(extractor)
        width = features_dim(extractor, observation_space)
        network = cls(width, n_actions, extractor=extractor, **kwargs)
        network.observation_space = observation_space
        return network

    def forward(self, x: O.ObsTensor) -> torch.Tensor:
        h = self.features(self.extractor(x))
        value = self.value(h).view(-1, 1, self.n_atoms)
        advantage = self.advantage(h).view(-1, self.n_actions, self.n_atoms)
        logits = value + advantage - advantage.mean(dim=1, keepdim=True)
        return F.log_softmax(logits, dim=-1)

    def q_values(self, x: O.ObsTensor) -> torch.Tensor:
        return (self.forward(x).exp() * self.support).sum(dim=-1)


class TorchRainbowDQNAgent(QAgentBase):
    """Rainbow on a distributional Q-network (observations → [B, n_actions, n_atoms]).

    The network returns, per action, log-probabilities over the atoms (as
    ``RainbowQNetwork`` does) or probabilities; which one is found by probing
    it at construction. ``n_atoms``, ``v_min`` and ``v_max`` default to the
    network's own when it is (or holds) a ``RainbowQNetwork``, else to 51,
    −10 and 10; given values must agree with the network's.
    """

    algorithm = "rainbow"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    adam_eps = 1.5e-4  # Hessel et al. (2018), Table 1

    def __init__(
        self,
        q_network: nn.Module,
        n_actions: int,
        optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        n_atoms: int | None = None,
        v_min: float | None = None,
        v_max: float | None = None,
        seed: int | None = None,
        observation_space: gym.Space | None = None,
    ) -> None:
        self.n_actions = check_n_actions(n_actions, self.algorithm)
        self.n_atoms, self.v_min, self.v_max = _support(q_network, n_atoms, v_min, v_max)
        probe = check_q_network(
            q_network, observation_space, (self.n_actions, self.n_atoms), self.algorithm
        )
        self.log_output = returns_log_probs(
            None if probe is None else probe.cpu().numpy(), self.algorithm
        )
        # The default network's every parameter is reached by every loss: one gradient buffer.
        flat = isinstance(q_network, RainbowQNetwork)
        super().__init__(q_network, optimizer, hyperparams, device, seed, flat_gradients=flat)
        self.noisy = noisy_layers(self.q_network)
        self.target_noisy = noisy_layers(self.target_network)
        if not self.noisy:
            warn_without_noisy_layers(self.algorithm)
        self.support = torch.from_numpy(atom_support(self.n_atoms, self.v_min, self.v_max)).to(
            self.device
        )
        self.apply_hyperparams()

    # ---- acting -------------------------------------------------------------

    def log_probs(self, network: nn.Module, obs: O.ObsTensor) -> torch.Tensor:
        out = network(obs)
        return out if self.log_output else out.clamp_min(1e-8).log()

    def q_values(self, network: nn.Module, obs: O.ObsTensor) -> torch.Tensor:
        """Q(s, a) = Σ_i z_i p_i(s, a)."""
        return (self.log_probs(network, obs).exp() * self.support).sum(dim=-1)

    def policy_module(self) -> nn.Module:
        """The greedy policy as a plain module (noisy layers at their mean
        weights once the module is in eval mode): observations → argmax_a Q(s, a)."""
        return GreedyPolicy(ExpectedQ(self.q_network, self.support, self.log_output))

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        obs = O.to_tensor(observation, self.device)
        if not deterministic:
            reset_noise(self.noisy, self.act_generator)
            return self.q_values(self.q_network, obs).argmax(dim=-1).cpu().numpy()
        self.q_network.eval()  # NoisyLinear uses its mean weights μ alone
        try:
            return self.q_values(self.q_network, obs).argmax(dim=-1).cpu().numpy()
        finally:
            self.q_network.train()

    @torch.no_grad()
    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = O.batch_size(observation)
        if self.warming_up:  # a uniformly random start
            actions = self.rng.integers(self.n_actions, size=n)
        else:
            reset_noise(self.noisy, self.generator)
            q = self.q_values(self.q_network, O.to_tensor(observation, self.device))
            actions = q.argmax(dim=-1).cpu().numpy()
        self._acting_steps += n
        return actions, {}

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        losses = []
        for batch in self.replay_minibatches(episode_data):
            for j in range(len(batch["rewards"])):
                weights = batch["weights"][j] if "weights" in batch else None
                loss, per_sample = self._gradient_step(
                    O.select(batch["observations"], j),
                    batch["actions"][j],
                    batch["rewards"][j],
                    O.select(batch["next_observations"], j),
                    batch["bootstrap"][j],
                    weights,
                )
                losses.append(loss)
                self.n_updates += 1
                if update_due(self.n_updates, self.hp["target_update_freq"]):
                    self._sync_target()
            if "indices" in batch:  # prioritized: one minibatch per block, its loss the priority
                self.replay.update_priorities(batch["indices"], per_sample.cpu().numpy())
        stats = self.replay_stats()
        if losses:
            stats["loss"] = float(torch.stack(losses).mean())
        return stats

    def _gradient_step(
        self,
        obs: O.ObsTensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: O.ObsTensor,
        bootstrap: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(len(actions), device=self.device)
        reset_noise(self.noisy, self.generator)
        reset_noise(self.target_noisy, self.generator)
        with torch.no_grad():
            # double Q: a* from the online network (the same noise as for s), its
            # distribution from the target network
            best = self.q_values(self.q_network, next_obs).argmax(dim=-1)
            next_probs = self.log_probs(self.target_network, next_obs)[rows, best].exp()
            target = categorical_projection(next_probs, rewards, bootstrap, self.support)
        log_p = self.log_probs(self.q_network, obs)[rows, actions]
        per_sample = -(target * log_p).sum(dim=-1)  # cross-entropy −Σ m_i log p_i(s, a)
        loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
        self.gradients.zero()
        loss.backward()
        self.gradients.clip(self.hp["max_grad_norm"])
        self.optimizer_step()
        return loss.detach(), per_sample.detach()


def categorical_projection(
    next_probs: torch.Tensor,
    rewards: torch.Tensor,
    bootstrap: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """Project the distribution of R + γ^m (1 − terminated) z onto the support z.

    Bellemare et al. (2017), Algorithm 1: atom z_j moves to
    T z_j = clip(R + bootstrap · z_j, v_min, v_max), at fractional index
    b_j = (T z_j − v_min)/Δz, and its probability is split between atoms
    ⌊b_j⌋ and ⌈b_j⌉ in proportion to closeness (all of it to b_j when b_j is
    a whole number).
    """
    n_atoms = support.numel()
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (n_atoms - 1)
    moved = (rewards.unsqueeze(1) + bootstrap.unsqueeze(1) * support).clamp(v_min, v_max)
    b = ((moved - v_min) / delta).clamp(0, n_atoms - 1)
    lower, upper = b.floor(), b.ceil()
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(1, lower.long(), next_probs * (upper + (lower == upper) - b))
    projected.scatter_add_(1, upper.long(), next_probs * (b - lower))
    return projected


class ExpectedQ(nn.Module):
    """A C51 network's distributions → Q(s, a) = Σ_i z_i p_i(s, a)."""

    def __init__(self, network: nn.Module, support: torch.Tensor, log_output: bool) -> None:
        super().__init__()
        self.network, self.log_output = network, log_output
        self.register_buffer("support", support.detach().clone())

    def forward(self, obs: O.ObsTensor) -> torch.Tensor:
        out = self.network(obs)
        probs = out.exp() if self.log_output else out
        return (probs * self.support).sum(dim=-1)


def _support(
    network: nn.Module, n_atoms: int | None, v_min: float | None, v_max: float | None
) -> tuple[int, float, float]:
    """The atoms: the network's when it is a RainbowQNetwork, else the arguments or 51, −10, 10
    (optix-core's ``choose_atoms``)."""
    inner = next((m for m in network.modules() if isinstance(m, RainbowQNetwork)), None)
    own = None if inner is None else (inner.n_atoms, inner.v_min, inner.v_max)
    return choose_atoms((n_atoms, v_min, v_max), own, "rainbow")


def make_rainbow(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> TorchRainbowDQNAgent:
    """The AgentSpec factory: a RainbowQNetwork of 128 units, 51 atoms on [−100, 100],
    on the default features extractor for the observation space."""
    n_actions = require_discrete(action_space, "rainbow")
    with seeded(seed):
        q_network = RainbowQNetwork.for_space(
            observation_space, n_actions, hidden_size=128, n_atoms=51, v_min=-100.0, v_max=100.0
        )
    return TorchRainbowDQNAgent(
        q_network,
        n_actions,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
    )
