"""PPO's accelerated minibatch step: no autograd at all.

For the default network on flat observations (``TwinMLP`` heads behind a
parameter-free extractor) with a categorical or Gaussian policy, the
gradient of PPO's loss (``algorithms/ppo.py``, ``TorchPPOAgent.loss``)
with respect to the network's two outputs is a few elementwise operations,
written out below; ``mlp.stacked_backward`` takes it through the MLP into
the flat gradient buffer. About 75 torch operations per minibatch against
about 140 through autograd; ``tests/test_accel.py`` checks that both give
the same update.

With r = exp(log π − log π_old), the per-row clipped surrogate
min(r Â, clip(r) Â) has ∂/∂r = Â where the unclipped term is the smaller
(r inside the clip range, or clipping would raise it) and 0 where the
clipped term is (it is flat there); ∂r/∂ log π = r. So
∂(−mean L_clip)/∂ log π = −r Â [r Â ≤ clip(r) Â] / B, and the chain rule
through log π and the entropy goes per distribution:

- categorical: ∂ log π(a)/∂ℓ_j = [j = a] − π_j; ∂(−c₂ H)/∂ℓ_j = c₂ π_j (log π_j + H);
- Gaussian: ∂ log N(u; μ, σ)/∂μ = z/σ, ∂/∂ log σ = z² − 1 (z = (u − μ)/σ),
  ∂H/∂ log σ = 1, and the clamp of log σ passes gradient only inside its range.

The value term: ∂(c₁ mean (V − R)²)/∂V = 2 c₁ (V − R)/B, masked to
|V − V_old| < c where clip_range_vf c clips V.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from optix_torch.accel import mlp as accel_mlp
from optix_torch.accel.optim import Gradients
from optix_torch.policies.distributions import (
    HALF_LOG_2PI,
    LOG_STD_MAX,
    LOG_STD_MIN,
    Categorical,
    DiagGaussian,
    Distribution,
    SquashedGaussian,
)
from optix_torch.policies.networks import ActorCritic, TwinMLP, parameters_of


class FusedPPOStep:
    """Writes one minibatch's gradients of PPO's loss into the flat buffer."""

    def __init__(self, heads: TwinMLP, gradients: Gradients, distribution: Distribution) -> None:
        self.heads, self.distribution = heads, distribution
        self.policy_gradient = (
            categorical_gradient if isinstance(distribution, Categorical) else gaussian_gradient
        )
        self._grad_out: dict[int, torch.Tensor] = {}
        # Made per learn() call, after the gradients are bound: the parameters
        # and their gradient views stay the same for all its minibatches.
        self.weights, self.biases = parameters_of(heads.weights), parameters_of(heads.biases)
        views = dict(zip(map(id, gradients.flat.params), gradients.flat.views, strict=True))
        self.weight_grads = [views[id(w)] for w in self.weights]
        self.bias_grads = [views[id(b)] for b in self.biases]

    @classmethod
    def of(
        cls, network: nn.Module, critic: Any, gradients: Gradients, distribution: Distribution
    ) -> FusedPPOStep | None:
        """The accelerated step where it applies, else None (train through autograd)."""
        heads = network.heads if isinstance(network, ActorCritic) and network.flat else network
        if (
            critic is not None
            or not isinstance(heads, TwinMLP)
            or not isinstance(distribution, Categorical | DiagGaussian | SquashedGaussian)
            or gradients.flat is None
            or not accel_mlp.applies(network)
            or not gradients.flat.bind()
        ):
            return None
        return cls(heads, gradients, distribution)

    def __call__(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        old_values: torch.Tensor,
        clip: float,
        clip_vf: float,
        vf_coef: float,
        entropy_coef: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gradients of L for one minibatch; the per-row surrogate, value error and log r."""
        heads = self.heads
        x = obs.reshape(obs.shape[0], -1).float()
        out, inputs = accel_mlp.stacked_forward(x, self.weights, self.biases, heads.activation)
        rows = x.shape[0]
        grad_out = self._grad_out.get(rows)
        if grad_out is None or grad_out.shape != out.shape:
            # Zeros that stay zero: the critic's unused output columns.
            grad_out = self._grad_out[rows] = torch.zeros_like(out)
        policy_dim = heads.policy_dim
        with torch.no_grad():
            log_ratio, surrogate = self.policy_gradient(
                out[0, :, :policy_dim],
                actions,
                old_log_probs,
                advantages,
                clip,
                entropy_coef,
                grad_out[0, :, :policy_dim],
            )
            value = out[1, :, 0]
            grad_value = grad_out[1, :, 0]
            if clip_vf > 0:
                delta = value - old_values
                error = old_values + delta.clamp(-clip_vf, clip_vf) - returns
                torch.mul(error, (delta.abs() < clip_vf) * (2.0 * vf_coef / rows), out=grad_value)
            else:
                error = value - returns
                torch.mul(error, 2.0 * vf_coef / rows, out=grad_value)
            accel_mlp.stacked_backward(
                inputs, self.weights, grad_out, heads.activation, self.weight_grads, self.bias_grads
            )
        return surrogate, error, log_ratio


def surrogate_gradient(
    log_prob: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log r, min(r Â, clip(r) Â), ∂(−mean L_clip)/∂ log π) per row."""
    log_ratio = log_prob - old_log_probs
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip).mul_(advantages)
    grad = unclipped.masked_fill(unclipped > clipped, 0.0).mul_(-1.0 / log_prob.shape[0])
    return log_ratio, torch.minimum(unclipped, clipped), grad


def categorical_gradient(
    logits: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    entropy_coef: float,
    grad_out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """∂(−L_clip − c₂ H)/∂ℓ into ``grad_out``; returns (log r, surrogate)."""
    index = actions.long()
    log_probs = torch.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(1, index).squeeze(-1)
    log_ratio, surrogate, grad = surrogate_gradient(chosen, old_log_probs, advantages, clip)
    probs = log_probs.exp()
    torch.mul(probs, grad.unsqueeze(-1), out=grad_out).neg_()
    grad_out.scatter_add_(1, index, grad.unsqueeze(-1))
    if entropy_coef > 0:
        entropy = -(probs * log_probs).sum(-1, keepdim=True)
        grad_out.add_(probs * (log_probs + entropy), alpha=entropy_coef / len(probs))
    return log_ratio, surrogate


def gaussian_gradient(
    params: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    entropy_coef: float,
    grad_out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """∂(−L_clip − c₂ H)/∂[μ ‖ log σ] into ``grad_out``; returns (log r, surrogate)."""
    d = actions.shape[1]
    mean, raw_log_std = params[:, :d], params[:, d:]
    log_std = raw_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    inv_std = torch.exp(-log_std)
    z = (actions - mean).mul_(inv_std)
    z_sq = z.square()
    log_prob = (z_sq * -0.5 - log_std).sum(-1) - d * HALF_LOG_2PI
    log_ratio, surrogate, grad = surrogate_gradient(log_prob, old_log_probs, advantages, clip)
    grad = grad.unsqueeze(-1)
    torch.mul(z.mul_(inv_std), grad, out=grad_out[:, :d])
    grad_log_std = z_sq.sub_(1.0).mul_(grad)
    if entropy_coef > 0:
        grad_log_std.sub_(entropy_coef / len(params))
    inside = (raw_log_std >= LOG_STD_MIN) & (raw_log_std <= LOG_STD_MAX)
    torch.mul(grad_log_std, inside, out=grad_out[:, d:])
    return log_ratio, surrogate
