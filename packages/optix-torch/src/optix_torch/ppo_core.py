"""What the two PPO agents share: the clipped-surrogate update and the twin network.

Schulman et al. (2017), "Proximal Policy Optimization Algorithms". For each
window of experience, with π_old the policy that acted (its log-probability
recorded at act time and carried in ``EpisodeData.policy_info``):

    Â_t    = GAE-λ(r, V)                                  (Schulman et al. 2016, eq. 16)
    R_t    = Â_t + V(s_t)                                  (the critic's λ-return target)
    r_t(θ) = π_θ(a_t|s_t) / π_old(a_t|s_t)                 (eq. 6)
    L_clip = E[ min(r_t Â_t, clip(r_t, 1 − ε, 1 + ε) Â_t) ]  (eq. 7)
    L_VF   = E[ (V_θ(s_t) − R_t)² ]
    L      = −L_clip + c₁ L_VF − c₂ H[π_θ(·|s_t)]           (eq. 9)

minimised for ``n_epochs`` passes over the window in shuffled minibatches,
each step's gradient clipped to a global norm of ``max_grad_norm``.

The subclasses say only what the policy distribution is (a categorical over
logits, a tanh-squashed Gaussian): how to act, the log-probability and
entropy of a batch of actions, and the gradient of −L_clip − c₂ H with
respect to the policy head's output.

Speed. At the sizes PPO usually runs (a [64, 64] MLP, minibatches of a few
hundred) an update costs per-operation overhead as much as arithmetic, so it
is written for few operations: the window goes to the device once, every
epoch's shuffled minibatches are gathered in one indexing operation and their
advantages normalised in one vectorised pass, losses stay tensors until the
window is done (no ``.item()`` per minibatch), all gradients live in one flat
buffer (zeroed, measured and clipped in one kernel each), and Adam's step is
one fused kernel. With the default network (``TwinMLP``, actor and critic
evaluated together by one batched matrix product per layer) the update skips
autograd: ``TwinMLP.backward_into`` and the subclasses' ``policy_gradient``
write the gradients of L directly: about 75 top-level torch operations per
minibatch on rl-zoo's CartPole settings, everything included, against about
140 through autograd with separate actor and critic MLPs (200 against 400
counting nested calls). Any other network trains through autograd;
``tests/test_ppo.py`` checks that both give the same gradients and update.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from optix_core.minibatch import make_minibatches
from optix_core.normalizers import RewardNormalizer
from optix_core.returns import compute_gae
from optix_core.types import EpisodeData, HyperparamSet
from optix_torch.a2c import explained_variance
from optix_torch.base import TorchAgentBase, set_learning_rate
from optix_torch.config import ppo as config
from optix_torch.optim import FlatGradients, default_optimizer, optimizer_step

# The gathered minibatches of a window are built this many bytes at a time at
# most (all epochs at once for small windows, an epoch at a time for images).
GATHER_BYTES = 64 * 2**20
# From this many elements up, tanh is computed as 2σ(2x) − 1: the same
# function (to float32 rounding), and torch's CPU sigmoid kernel is about
# twice as fast as its tanh; below it the single tanh kernel costs less.
SIGMOID_TANH_FROM = 4096


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place (``x`` must not be needed by autograd)."""
    if x.device.type == "cpu" and x.numel() >= SIGMOID_TANH_FROM:
        return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return x.tanh_()


class TwinMLP(nn.Module):
    """Actor and critic MLPs of the same widths, evaluated side by side.

    Mathematically two separate networks, ``in → hidden... → policy_dim`` and
    ``in → hidden... → 1``, with no shared weights; layer ``k`` of both is
    stored as one ``[2, fan_in, fan_out]`` tensor (tower 0 the actor, tower 1
    the critic), so that one batched matrix product (``torch.baddbmm``)
    computes a layer of both. The critic's output layer is as wide as the
    actor's and only its column 0 is read (the others get no gradient and
    stay zero). The forward pass returns ``(policy_output [B, policy_dim],
    value [B])``.

    Initialised as Stable-Baselines3 and CleanRL initialise PPO's networks:
    orthogonal weights with gain √2 in hidden layers, 0.01 for the policy head
    and 1 for the value head, zero biases.
    """

    def __init__(
        self,
        in_dim: int,
        policy_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("TwinMLP needs at least one hidden layer")
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.in_dim, self.policy_dim = int(in_dim), int(policy_dim)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        widths = [self.in_dim, *self.hidden, max(self.policy_dim, 1)]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(2, fan_in, fan_out))
            for fan_in, fan_out in itertools.pairwise(widths)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(2, 1, fan_out)) for fan_out in widths[1:]
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        def orthogonal(fan_in: int, fan_out: int, gain: float) -> torch.Tensor:
            # nn.Linear's [out, in] orthogonal matrix, stored as [in, out].
            return nn.init.orthogonal_(torch.empty(fan_out, fan_in), gain=gain).T

        last = len(self.weights) - 1
        for k, w in enumerate(self.weights):
            fan_in, fan_out = w.shape[1:]
            if k < last:
                w[0] = orthogonal(fan_in, fan_out, math.sqrt(2.0))
                w[1] = orthogonal(fan_in, fan_out, math.sqrt(2.0))
            else:
                w[0] = orthogonal(fan_in, fan_out, 0.01)
                w[1].zero_()
                w[1, :, :1] = orthogonal(fan_in, 1, 1.0)
        for b in self.biases:
            b.zero_()

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return torch.tanh(x) if self.activation == "tanh" else torch.relu(x)
        return tanh_(x) if self.activation == "tanh" else x.relu_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_train(x)[0]
        return out[0, :, : self.policy_dim], out[1, :, 0]

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Both towers' outputs ``[2, B, width]`` and each layer's input (for ``backward_into``)."""
        if x.dim() != 2:
            x = x.reshape(x.shape[0], -1)
        h = x.unsqueeze(0).expand(2, -1, -1)  # both towers read the same input
        inputs = []
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            inputs.append(h)
            h = torch.baddbmm(b, h, w)
            if k < last:
                h = self._activate(h)
        return h, inputs

    def backward_into(
        self,
        inputs: list[torch.Tensor],
        grad_out: torch.Tensor,
        weight_grads: list[torch.Tensor],
        bias_grads: list[torch.Tensor],
    ) -> None:
        """Backpropagate ``grad_out`` (∂L/∂ output, ``[2, B, width]``) through
        both towers, writing ∂L/∂W and ∂L/∂b into the given tensors (no autograd).

        For layer k with input h_k and pre-activation a_k = h_k W_k + b_k:
        ∂L/∂W_k = h_kᵀ ∂L/∂a_k, ∂L/∂b_k = Σ_rows ∂L/∂a_k, and
        ∂L/∂a_{k−1} = (∂L/∂a_k W_kᵀ) ⊙ act′(a_{k−1}), with tanh′ = 1 − h_k²
        and relu′ = [h_k > 0] read off the saved output h_k of layer k − 1.
        """
        grad = grad_out
        for k in range(len(self.weights) - 1, -1, -1):
            torch.bmm(inputs[k].transpose(1, 2), grad, out=weight_grads[k])
            torch.sum(grad, dim=1, keepdim=True, out=bias_grads[k])
            if k:
                grad = torch.bmm(grad, self.weights[k].transpose(1, 2))
                if self.activation == "tanh":
                    grad = torch.ops.aten.tanh_backward(grad, inputs[k])
                else:
                    grad = grad.mul_(inputs[k] > 0)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, policy_dim={self.policy_dim}, hidden={self.hidden}, "
            f"activation={self.activation!r}"
        )


class PPOBase(TorchAgentBase):
    """PPO's update; subclasses define the policy distribution.

    Networks: ``actor`` and ``critic`` as separate modules (tensor-optix's
    form: the actor returns the policy head's output, the critic ``[B, 1]``),
    or ``critic=None`` and an ``actor`` that returns ``(policy_output, value)``
    itself, such as ``TwinMLP`` or a network with a shared trunk.
    """

    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    ONLINE_SEARCH_SPACE = config.ONLINE_SEARCH_SPACE
    # Subclasses: the name of the policy output in error messages.
    POLICY_OUTPUT: ClassVar[str] = "policy"

    def __init__(
        self,
        actor: nn.Module,
        critic: nn.Module | None,
        optimizer: torch.optim.Optimizer | None,
        hyperparams: HyperparamSet | dict[str, Any] | None,
        reward_normalizer: RewardNormalizer | None,
        device: str | torch.device,
        seed: int | None,
        policy_dim: int | None,
        observation_space: gym.Space | None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.actor = actor.to(self.device)
        self.critic = critic.to(self.device) if critic is not None else None
        self.policy_dim = check_networks(
            self.actor,
            self.critic,
            policy_dim,
            observation_space,
            self.algorithm,
            self.POLICY_OUTPUT,
        )
        self.reward_normalizer = reward_normalizer
        self.env_steps = 0  # environment steps learned from: drives anneal_steps
        self._params = [p for m in self.modules().values() for p in m.parameters()]
        self._grads = FlatGradients(self._params)
        self._grad_out: dict[int, torch.Tensor] = {}
        self._flat_bound = False
        self._twin_grads: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self.optimizer = optimizer or default_optimizer(
            self._params,
            self.hp["learning_rate"],
            eps=1e-5,  # as Stable-Baselines3's PPO
        )
        self.apply_hyperparams()

    # ---- networks -------------------------------------------------------

    def modules(self) -> dict[str, nn.Module]:
        if self.critic is None:
            return {"actor_critic": self.actor}
        return {"actor": self.actor, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": self.optimizer}

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(policy_output [B, policy_dim], V(s) [B])`` for a batch of observations."""
        if self.critic is None:
            return self.actor(obs)
        return self.actor(obs), self.critic(obs).squeeze(-1)

    def policy_output(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy head alone."""
        return self.actor(obs)[0] if self.critic is None else self.actor(obs)

    @torch.inference_mode()
    def numpy_forward(
        self, observation: Any, values: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The policy output ``[B, policy_dim]`` and V ``[B]`` (None unless
        ``values``) of a batch of observations, as numpy arrays.

        Acting works on a handful of rows, where every torch operation costs
        more in dispatch than in arithmetic; so ``act`` and ``act_info`` run
        the network in torch, cross to numpy once, and sample there.
        """
        obs = self.to_tensor(observation)
        if self.critic is None and isinstance(self.actor, TwinMLP):
            out = self.actor.forward_train(obs)[0].float().cpu().numpy()
            return out[0, :, : self.policy_dim], out[1, :, 0]
        if self.critic is None:
            policy, value = self.actor(obs)
        else:
            policy = self.actor(obs)
            value = self.critic(obs).squeeze(-1) if values else None
        value_np = value.float().cpu().numpy() if values and value is not None else None
        return policy.float().cpu().numpy(), value_np

    # ---- what a subclass writes ------------------------------------------

    def log_prob(
        self, policy_out: torch.Tensor, actions: torch.Tensor, entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log π(a|s) per row, comparable with ``ratio_old_log_probs``, and the
        entropy per row when asked for (else None). Differentiable."""
        raise NotImplementedError

    def policy_gradient(
        self,
        policy_out: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        clip: float,
        entropy_coef: float,
        grad_out: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ∂(−L_clip − c₂ H)/∂ policy_out, averaged over the B rows, into
        ``grad_out``; return (log r_t, the per-row clipped surrogate min(r Â, clip(r) Â)).

        Both subclasses go through ``surrogate_gradient`` for ∂/∂ log π.
        """
        raise NotImplementedError

    def mean_entropy(self, policy_out: torch.Tensor) -> torch.Tensor:
        """The policy's mean entropy over a batch (a diagnostic)."""
        raise NotImplementedError

    def learn_actions(self, data: EpisodeData, n: int) -> np.ndarray:
        """The window's actions in the form ``log_prob`` takes, ``[n, ...]``."""
        raise NotImplementedError

    def ratio_old_log_probs(self, recorded: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """π_old's log-probabilities as recorded at act time, in ``log_prob``'s terms."""
        return recorded

    def action_tensor(self, columns: torch.Tensor) -> torch.Tensor:
        """The action columns of the window's table in ``log_prob``'s form."""
        return columns

    # ---- schedules ------------------------------------------------------

    def schedule_fraction(self) -> float:
        """1 − steps/anneal_steps, floored at 0 (1 when annealing is off)."""
        anneal = self.hp["anneal_steps"]
        return max(0.0, 1.0 - self.env_steps / anneal) if anneal else 1.0

    def apply_hyperparams(self) -> None:
        lr = self.hp["learning_rate"] * self.schedule_fraction()
        set_learning_rate(self.optimizer, lr)

    # ---- learning -------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        data, hp = episode_data, self.hp
        steps, envs = np.shape(data.rewards)
        n = steps * envs
        self.env_steps += n
        fraction = self.schedule_fraction()
        learning_rate, clip = hp["learning_rate"] * fraction, hp["clip_ratio"] * fraction
        set_learning_rate(self.optimizer, learning_rate)

        obs = np.asarray(data.observations)
        obs = obs.reshape(n, *obs.shape[2:])
        actions = self.learn_actions(data, n)
        values, next_values, final_values, old_log_probs = self._rollout_values(data, obs, actions)
        rewards = data.rewards
        if self.reward_normalizer is not None:
            rewards = self.reward_normalizer.normalize_window(rewards, data.dones)
        advantages, returns = compute_gae(
            rewards,
            values,
            data.terminated,
            data.truncated,
            next_values,
            final_values,
            gamma=hp["gamma"],
            lam=hp["gae_lambda"],
        )

        # The window goes to the device once: observations, and one float
        # matrix of [old log-prob, advantage, return, actions...] per sample.
        obs_t = self.to_tensor(obs)
        table = np.concatenate(
            [
                np.stack([old_log_probs, advantages.reshape(n), returns.reshape(n)], axis=1),
                actions.reshape(n, -1),
            ],
            axis=1,
            dtype=np.float32,
        )
        table_t = self.to_tensor(table)

        batch = min(int(hp["minibatch_size"]), n)
        epochs = int(hp["n_epochs"])
        row_bytes = 4 * (table.shape[1] + obs[0].size)
        per_gather = max(1, min(epochs, GATHER_BYTES // max(1, n * row_bytes)))
        coefs = (clip, float(hp["vf_coef"]), float(hp["entropy_coef"]))
        max_grad_norm = float(hp["max_grad_norm"])
        normalize = bool(hp["normalize_advantage"]) and batch > 1
        flat = self._flat_bound = self._grads.bind()
        minibatch_step = self._fused_step if flat and self._bind_twin() else self._autograd_step
        step = optimizer_step(self.optimizer)
        surrogates: list[torch.Tensor] = []
        errors: list[torch.Tensor] = []
        log_ratios: list[torch.Tensor] = []
        for first in range(0, epochs, per_gather):
            count = min(per_gather, epochs - first)
            # Every epoch of this gather: a permutation cut into minibatches.
            order = np.concatenate(
                [np.concatenate(make_minibatches(n, batch, rng=self.rng)) for _ in range(count)]
            )
            index = torch.as_tensor(order, device=self.device)
            obs_g = obs_t.index_select(0, index)
            rows = table_t.index_select(0, index)
            old_g, ret_g = rows[:, 0].contiguous(), rows[:, 2].contiguous()
            adv_g = rows[:, 1].contiguous()
            if normalize:
                adv_g = normalize_per_minibatch(adv_g, count, n, batch)
            act_g = self.action_tensor(rows[:, 3:])
            for lo in range(0, count * n, n):
                for start in range(lo, lo + n, batch):
                    mb = slice(start, min(start + batch, lo + n))
                    surrogate, error, log_ratio = minibatch_step(
                        obs_g[mb], act_g[mb], old_g[mb], adv_g[mb], ret_g[mb], *coefs
                    )
                    self._grads.clip(max_grad_norm)
                    step()
                    surrogates.append(surrogate)
                    errors.append(error)
                    log_ratios.append(log_ratio)
        return self._diagnostics(
            obs_t, surrogates, errors, log_ratios, clip, learning_rate, values, returns
        )

    def _autograd_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        clip: float,
        vf_coef: float,
        entropy_coef: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One minibatch's gradients of L (eq. 9) through autograd, into the params' ``.grad``."""
        policy_out, value = self.forward(obs)
        log_prob, entropy = self.log_prob(policy_out, actions, entropy=entropy_coef > 0)
        log_ratio = log_prob - old_log_probs
        ratio = log_ratio.exp()  # r_t(θ), eq. 6
        # L_clip's samples, eq. 7: the pessimistic bound of the clipped surrogate.
        surrogate = torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
        error = value - returns
        loss = vf_coef * error.square().mean() - surrogate.mean()  # eq. 9
        if entropy is not None:
            loss = loss - entropy_coef * entropy.mean()
        self._grads.zero()
        loss.backward()
        return surrogate.detach(), error.detach(), log_ratio.detach()

    def _bind_twin(self) -> bool:
        """Whether the hand-written update applies (a ``TwinMLP`` alone, with
        flat gradients bound); if so, note where its layers' gradients live."""
        net = self.actor
        if not (isinstance(net, TwinMLP) and self.critic is None and self._flat_bound):
            return False
        view = {id(p): v for p, v in zip(self._grads.params, self._grads.views, strict=True)}
        self._twin_grads = ([view[id(w)] for w in net.weights], [view[id(b)] for b in net.biases])
        return True

    @torch.no_grad()
    def _fused_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        clip: float,
        vf_coef: float,
        entropy_coef: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same gradients as ``_autograd_step`` for a ``TwinMLP``, written by hand."""
        net: TwinMLP = self.actor  # type: ignore[assignment]
        out, inputs = net.forward_train(obs)
        rows = obs.shape[0]
        grad_out = self._grad_out.get(rows)
        if grad_out is None or grad_out.shape != out.shape:
            # Zeros that stay zero: the critic's unused output columns.
            grad_out = self._grad_out[rows] = torch.zeros_like(out)
        log_ratio, surrogate = self.policy_gradient(
            out[0, :, : self.policy_dim],
            actions,
            old_log_probs,
            advantages,
            clip,
            entropy_coef,
            grad_out[0, :, : self.policy_dim],
        )
        error = out[1, :, 0] - returns
        torch.mul(error, 2.0 * vf_coef / rows, out=grad_out[1, :, 0])  # ∂(c₁ L_VF)/∂V
        net.backward_into(inputs, grad_out, *self._twin_grads)
        return surrogate, error, log_ratio

    @torch.inference_mode()
    def _rollout_values(
        self, data: EpisodeData, obs: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """V(s_t), V after the window, V of truncated episodes' final
        observations, and π_old's log-probabilities.

        V(s_t) and log π_old come from ``policy_info`` (recorded at act time);
        a window collected without them (a deterministic pipeline, another
        agent's data) gets them from the current networks. The rest takes one
        forward pass.
        """
        steps, envs = np.shape(data.rewards)
        n = steps * envs
        info = data.policy_info
        recorded = "log_probs" in info and "values" in info
        truncated = np.asarray(data.truncated) & ~np.asarray(data.terminated)
        parts = [] if recorded else [obs]
        parts.append(np.asarray(data.next_observations).reshape(envs, *obs.shape[1:]))
        if truncated.any():
            finals = np.asarray(data.final_observations)[truncated]
            parts.append(finals.reshape(len(finals), *obs.shape[1:]))
        policy_out, value = self.forward(self.to_tensor(np.concatenate(parts)))
        out = value.float().cpu().numpy()
        if recorded:
            values = np.asarray(info["values"], dtype=np.float32).reshape(steps, envs)
            old = self.ratio_old_log_probs(
                np.asarray(info["log_probs"], dtype=np.float32).reshape(n), actions
            )
        else:
            values = out[:n].reshape(steps, envs)
            act_t = self.action_tensor(self.to_tensor(actions.reshape(n, -1)))
            old = self.log_prob(policy_out[:n], act_t, entropy=False)[0].float().cpu().numpy()
            out = out[n:]
        final_values = np.zeros((steps, envs), dtype=np.float32)
        final_values[truncated] = out[envs:]
        return values, out[:envs], final_values, old

    @torch.no_grad()
    def _diagnostics(
        self,
        obs_t: torch.Tensor,
        surrogates: list[torch.Tensor],
        errors: list[torch.Tensor],
        log_ratios: list[torch.Tensor],
        clip: float,
        learning_rate: float,
        values: np.ndarray,
        returns: np.ndarray,
    ) -> dict[str, float]:
        """Means over every sample of every epoch; entropy of the updated policy on the window."""
        log_ratio = torch.cat(log_ratios)
        ratio = log_ratio.exp()
        stats = torch.stack(
            [
                -torch.cat(surrogates).mean(),
                torch.cat(errors).square().mean(),
                self.mean_entropy(self.policy_output(obs_t)),
                ((ratio - 1.0) - log_ratio).mean(),  # approx KL(π_old‖π), Schulman's k3
                ((ratio - 1.0).abs() > clip).float().mean(),
            ]
        ).cpu()
        policy_loss, value_loss, entropy, approx_kl, clip_fraction = stats.tolist()
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
            "explained_variance": explained_variance(values, returns),
            "learning_rate": learning_rate,
            "clip_ratio": clip,
        }

    # ---- checkpoint extras and teardown -------------------------------------

    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"env_steps": self.env_steps}
        if self.reward_normalizer is not None:
            state["reward_normalizer"] = {
                k: np.asarray(v).tolist() for k, v in self.reward_normalizer.state_dict().items()
            }
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state.get("env_steps", 0))
        saved = state.get("reward_normalizer")
        if self.reward_normalizer is not None and saved is not None:
            self.reward_normalizer.load_state_dict(
                {k: v if k == "count" else np.asarray(v) for k, v in saved.items()}
            )
        self.apply_hyperparams()

    def teardown(self) -> None:
        self._grads.release()
        self._grad_out.clear()
        super().teardown()


def surrogate_gradient(
    log_prob: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log r, min(r Â, clip(r) Â), ∂(−mean L_clip)/∂ log π) per row.

    ∂ min(r Â, clip(r) Â)/∂r is Â where the unclipped term is the smaller (or
    they are equal: r inside the clip range), else 0 (the clipped term is
    flat there); ∂r/∂ log π = r. So the gradient is −r Â [r Â ≤ clip(r) Â] / B.
    """
    log_ratio = log_prob - old_log_probs
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip).mul_(advantages)
    grad = unclipped.masked_fill(unclipped > clipped, 0.0).mul_(-1.0 / log_prob.shape[0])
    return log_ratio, torch.minimum(unclipped, clipped), grad


def normalize_per_minibatch(adv: torch.Tensor, epochs: int, n: int, batch: int) -> torch.Tensor:
    """(Â − mean) / (std + 1e-8) within each minibatch of each epoch, vectorised.

    ``adv`` holds ``epochs`` shuffled passes of ``n`` samples, each cut into
    minibatches of ``batch`` with a shorter last one; a last minibatch of one
    sample is left as it is (its std is undefined).
    """
    rows = adv.view(epochs, n)
    full = n - n % batch
    out = torch.empty_like(rows)
    if full:
        blocks = rows[:, :full].reshape(epochs, full // batch, batch)
        mean, std = blocks.mean(-1, keepdim=True), blocks.std(-1, keepdim=True)
        out[:, :full] = ((blocks - mean) / (std + 1e-8)).reshape(epochs, full)
    if n - full > 1:
        tail = rows[:, full:]
        out[:, full:] = (tail - tail.mean(-1, keepdim=True)) / (tail.std(-1, keepdim=True) + 1e-8)
    elif n - full == 1:
        out[:, full:] = rows[:, full:]
    return out.view(-1)


def check_networks(
    actor: nn.Module,
    critic: nn.Module | None,
    policy_dim: int | None,
    observation_space: gym.Space | None,
    owner: str,
    policy_output: str,
) -> int | None:
    """Run a dummy batch through the networks and insist on the right shapes.

    Returns the policy output size (``policy_dim``, or the actor's when not
    given). The probe input comes from ``observation_space``, or from the
    first linear layer's input size; a network that offers neither is
    trusted until the first batch.
    """
    probe = _probe_input(actor, observation_space)
    if probe is None:
        return policy_dim
    with torch.no_grad():
        out = actor(probe)
        if critic is None:
            if not (isinstance(out, tuple | list) and len(out) == 2):
                raise ValueError(
                    f"{owner}: without a critic the actor must return (policy_output, value), "
                    f"got {type(out).__name__}; pass critic= or an actor-critic network"
                )
            out, value = out
        else:
            value = critic(probe)
            if value.ndim != 2 or value.shape[1] != 1:
                raise ValueError(
                    f"{owner}: the critic outputs shape {tuple(value.shape[1:])} per "
                    "observation, expected (1,)"
                )
            value = value.squeeze(-1)
    if value.shape != (probe.shape[0],):
        raise ValueError(
            f"{owner}: the value output has shape {tuple(value.shape)} for a batch of "
            f"{probe.shape[0]}, expected ({probe.shape[0]},)"
        )
    if out.ndim != 2 or (policy_dim is not None and out.shape[1] != policy_dim):
        expected = f"({policy_dim},)" if policy_dim is not None else "(k,)"
        raise ValueError(
            f"{owner}: the actor outputs shape {tuple(out.shape[1:])} per observation, "
            f"expected {expected} ({policy_output}) for this action space"
        )
    return int(out.shape[1])


def _probe_input(actor: nn.Module, observation_space: gym.Space | None) -> torch.Tensor | None:
    device = next(actor.parameters()).device
    if isinstance(observation_space, gym.spaces.Box):
        return torch.zeros(2, *observation_space.shape, device=device)
    in_dim = getattr(actor, "in_dim", None)
    if in_dim is None:
        linear = next((m for m in actor.modules() if isinstance(m, nn.Linear)), None)
        in_dim = linear.in_features if linear is not None else None
    return None if in_dim is None else torch.zeros(2, int(in_dim), device=device)


def box_observations(observation_space: gym.Space, owner: str) -> int:
    """The flat size of a Box observation space (what the default network reads)."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(
            f"{owner}'s default network reads Box observations, got {observation_space}; "
            "build the agent with your own networks for other observation spaces"
        )
    return int(np.prod(observation_space.shape))
