"""TorchDQNAgent: deep Q-learning with experience replay and a target network.

Mnih et al. (2015), "Human-level control through deep reinforcement
learning", with the prioritized replay of Schaul et al. (2016) and the n-step
targets of Sutton & Barto (2018, eq. 7.1) as options. Each learn() call stores
the window's transitions (each with its real next observation) and takes the
gradient steps they earn on Stable-Baselines3's schedule (``gradient_steps``
after every ``train_freq``-th vector step, each minibatch drawn from what was
stored by then; ``replay.ReplayAgent.replay_minibatches``), each on

    y_i = R_i + γ_i · (1 − terminated_i) · max_a' Q_target(s'_i, a')
    L   = Σ_i w_i · Huber(Q(s_i, a_i) − y_i) / B        (squared error with huber_loss False)

where an n-step transition carries R = Σ_{k<m} γ^k r_{t+k} and γ_i = γ^m
(m = n unless the episode ended sooner; m = 1, γ_i = γ for plain DQN), and
w_i = 1 for uniform replay or the importance weight (N·P(i))^−β / max_j w_j
of prioritized replay (β annealed from ``per_beta`` to 1 over
``per_beta_steps`` env steps), whose priorities become |Q(s_i, a_i) − y_i| +
1e-6. Every ``target_update_freq`` gradient steps the target network becomes
a copy of the online one (a hard update). Truncated episodes bootstrap from
their final observation; only ``terminated`` stops the bootstrap.

Exploration is ε-greedy, with ε a function of the env steps collected so far
(those learned from and those acted for since; never of act()), evaluated at
every training action: linear from ``epsilon`` to ``epsilon_min`` over
``exploration_steps`` env steps (Stable-Baselines3's schedule), or, with
``exploration_steps = 0``, ``max(epsilon_min, epsilon · epsilon_decay^t)``
after t env steps (tensor-optix's multiplicative decay, per env step; see
``optix_core.algorithms.config.dqn``). Until ``learning_starts`` env steps
were collected, training actions are uniformly random.

The network is chosen from the observation space (``make_dqn``): a plain
ReLU MLP on flat vectors, else ``QNetwork``, the policy layer's features
extractor (NatureCNN or SmallCNN for uint8 images, one-hot for Discrete,
combined for Dict) under an MLP; or any module the user gives.

Speed: between two target updates the target network does not change, so the
targets of all those gradient steps come from one batched forward pass, and
with uniform replay the minibatches of a window are gathered on the host as
their steps come and moved to the device together (images as uint8), i.e.
one host-to-device copy per window. Nothing is read back from the device
until the window's updates are done. Where ``optix_torch.accel`` applies, a
plain Linear/ReLU/Tanh ``nn.Sequential`` Q-network gets its TD gradients by
hand (``accel.mlp.SequentialMLP``) in one flat gradient buffer, and Adam runs
on its fused kernel (``LeanAdam``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optix_core.algorithms.config import dqn as config
from optix_core.off_policy import (
    check_n_actions,
    epsilon_greedy,
    epsilon_schedule,
    require_discrete,
    sync_segments,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.accel.mlp import SequentialMLP
from optix_torch.algorithms.q_learning import GreedyPolicy, QAgentBase, check_q_network
from optix_torch.policies import observations as O
from optix_torch.policies.extractors import (
    ImageCNN,
    default_extractor,
    features_dim,
    orthogonal_init,
)
from optix_torch.policies.networks import mlp, seeded


class TorchDQNAgent(QAgentBase):
    """DQN on a user's Q-network (observations → one Q-value per action).

    Args:
        q_network: any module mapping a batch of observations (as
            ``policies.observations.to_tensor`` makes them: uint8 images stay
            uint8, Dict observations are dicts of tensors) to ``[B, n_actions]``.
        n_actions: the size of the Discrete action space.
        optimizer: over the network's parameters; default Adam
            (``accel.optim.adam``). Its learning rate follows ``hyperparams``.
        hyperparams: keys of ``optix_core.algorithms.config.dqn.DEFAULTS``.
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: seeds the agent's own generators (exploration, minibatches).
        observation_space: when given, the network is probed with observations
            from it (else from the space it was built for, or sized by its
            first linear layer).
    """

    algorithm = "dqn"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS

    def __init__(
        self,
        q_network: nn.Module,
        n_actions: int,
        optimizer: torch.optim.Optimizer | None = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
        observation_space: gym.Space | None = None,
    ) -> None:
        self.n_actions = check_n_actions(n_actions, self.algorithm)
        check_q_network(q_network, observation_space, (self.n_actions,), self.algorithm)
        # A plain Linear/ReLU/Tanh stack gets its gradients by hand (accel), in one flat buffer.
        mlp_form = SequentialMLP.of(q_network)
        flat = mlp_form is not None or isinstance(q_network, QNetwork)
        super().__init__(q_network, optimizer, hyperparams, device, seed, flat_gradients=flat)
        bound = self.gradients.flat is not None and self.gradients.flat.bind()
        self.mlp = mlp_form if bound else None
        self.apply_hyperparams()

    @property
    def epsilon(self) -> float:
        """The exploration rate of the next training action."""
        return self.epsilon_at(self.steps_collected)

    def epsilon_at(self, env_steps: int) -> float:
        """ε after ``env_steps`` env steps: 1 until ``learning_starts``, then the schedule
        (optix-core's ``off_policy.epsilon_schedule``)."""
        return epsilon_schedule(env_steps, self.hp)

    # ---- acting -------------------------------------------------------------

    def q_values(self, obs: O.ObsTensor) -> torch.Tensor:
        return self.mlp.q_values(obs) if self.mlp is not None else self.q_network(obs)

    def policy_module(self) -> nn.Module:
        """The greedy policy as a plain module: observations → argmax_a Q(s, a)."""
        return GreedyPolicy(self.q_network)

    @torch.no_grad()
    def greedy_actions(self, observation: Any) -> np.ndarray:
        """argmax_a Q(s, a) for a batch of observations, on the host."""
        return self.q_values(O.to_tensor(observation, self.device)).argmax(dim=-1).cpu().numpy()

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        greedy = self.greedy_actions(observation)
        if deterministic:
            return greedy
        n = len(greedy)
        explore = torch.rand(n, generator=self.act_generator).numpy() < self.epsilon
        random = torch.randint(self.n_actions, (n,), generator=self.act_generator).numpy()
        return np.where(explore, random, greedy)

    @torch.no_grad()
    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = O.batch_size(observation)
        # One vector step: every environment at the ε of the steps collected before it (SB3).
        actions = epsilon_greedy(
            self.rng, self.epsilon, n, self.n_actions, lambda: self.greedy_actions(observation)
        )
        self._acting_steps += n
        return actions, {}

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        sync_every = self.hp["target_update_freq"]
        if self.mlp is not None:
            self.gradients.flat.bind()  # SequentialMLP writes into the flat gradients' views
        losses, targets = [], []
        for batch in self.replay_minibatches(episode_data):
            # Gradient steps until the next target update share one target network.
            for steps, sync in sync_segments(len(batch["rewards"]), self.n_updates, sync_every):
                segment = steps.stop - steps.start
                part = {k: O.select(v, steps) for k, v in batch.items() if k != "indices"}
                with torch.no_grad():
                    next_obs = O.map_obs(lambda t: t.flatten(0, 1), part["next_observations"])
                    next_q = self.target_network(next_obs).max(dim=-1).values
                    # y = R + γ_m (1 − terminated) max_a' Q_target(s', a')
                    y = part["rewards"] + part["bootstrap"] * next_q.view_as(part["rewards"])
                for j in range(segment):
                    weights = part["weights"][j] if "weights" in part else None
                    obs = O.select(part["observations"], j)
                    loss, td = self._gradient_step(obs, part["actions"][j], y[j], weights)
                    losses.append(loss)
                targets.append(y.mean())
                self.n_updates += segment
                if sync:
                    self._sync_target()
            if "indices" in batch:  # prioritized: one minibatch per block, |δ| its new priority
                self.replay.update_priorities(batch["indices"], td.abs().cpu().numpy())
        stats = {"epsilon": self.epsilon, **self.replay_stats()}
        if losses:
            stats["loss"] = float(torch.stack(losses).mean())
            stats["target_q"] = float(torch.stack(targets).mean())
        return stats

    def _gradient_step(
        self,
        obs: O.ObsTensor,
        actions: torch.Tensor,
        target: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on L = Σ_i w_i ℓ(Q(s_i, a_i) − y_i) / B; returns L and the TD errors."""
        if self.mlp is not None:  # the same gradients, written by hand (accel)
            loss, td = self.mlp.td_step(
                obs, actions, target, weights, self.hp["huber_loss"], self.gradients.flat.views
            )
        else:
            q = self.q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
            error = F.smooth_l1_loss if self.hp["huber_loss"] else F.mse_loss
            if weights is None:
                loss = error(q, target)
            else:
                loss = (weights * error(q, target, reduction="none")).mean()
            self.gradients.zero()
            loss.backward()
            loss, td = loss.detach(), (q - target).detach()
        self.gradients.clip(self.hp["max_grad_norm"])
        self.optimizer_step()
        return loss, td


class QNetwork(nn.Module):
    """Observations → features extractor → ReLU MLP → one Q-value per action.

    The default DQN network for every observation space but flat float
    vectors (``make_dqn`` gives those a plain ``nn.Sequential`` MLP, which the
    accelerator trains). ``extractor`` defaults to the policy layer's
    ``default_extractor(observation_space)``: NatureCNN (≥ 36 pixels a side)
    or SmallCNN for uint8 images, one-hot for Discrete, combined for Dict,
    initialised orthogonally as the layer's ``ActorCritic`` is (with torch's
    default initialisation a NatureCNN gives nearly the same Q-values for
    every image at first); any module mapping observations to
    ``[B, features]`` serves. ``hidden``
    defaults to none after a CNN (Mnih et al. 2015: its 512-unit layer feeds
    the Q-values; SB3's CnnPolicy alike) and (256, 256) otherwise.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        n_actions: int,
        extractor: nn.Module | None = None,
        hidden: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.observation_space = observation_space
        if extractor is None:
            extractor = default_extractor(observation_space)
            orthogonal_init(extractor)
        self.extractor = extractor
        width = features_dim(self.extractor, observation_space)
        if hidden is None:
            hidden = () if isinstance(self.extractor, ImageCNN) else (256, 256)
        self.head = mlp(width, n_actions, hidden, nn.ReLU)

    def forward(self, obs: O.ObsTensor) -> torch.Tensor:
        return self.head(self.extractor(obs))


def default_q_network(observation_space: gym.Space, n_actions: int) -> nn.Module:
    """A ReLU MLP [256, 256] (rl-zoo's CartPole network) on flat float vectors, else ``QNetwork``."""
    space = observation_space
    if (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and np.issubdtype(space.dtype, np.floating)
    ):
        return mlp(space.shape[0], n_actions, (256, 256), nn.ReLU)
    return QNetwork(space, n_actions)


def make_dqn(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> TorchDQNAgent:
    """The AgentSpec factory: ``default_q_network`` for the observation space."""
    n_actions = require_discrete(action_space, "dqn")
    with seeded(seed):
        q_network = default_q_network(observation_space, n_actions)
    return TorchDQNAgent(
        q_network,
        n_actions,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
    )
