"""NoisyLinear: a linear layer with learned, factorized Gaussian weight noise.

Fortunato et al. (2018), "Noisy Networks for Exploration", section 3 (b):

    y   = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b
    ε_w = f(ε_out) f(ε_in)ᵀ,   ε_b = f(ε_out),   f(x) = sgn(x) √|x|,   ε_in, ε_out ~ N(0, 1)
    μ ~ U(−1/√p, 1/√p),   σ = σ₀ / √p   (p inputs, σ₀ = 0.5)

For a minibatch the noisy weight matrix is built (an outer product and a fused
multiply-add over its p × q entries) and applied with one matrix product; the
factored form f(ε_out) ⊙ (σ_w (f(ε_in) ⊙ x)) would double the matrix products
forward and backward. For a few rows (acting) the factored form is cheaper and
is used instead; both compute the same y.

In training mode the layer uses the noise it holds; in eval mode (``.eval()``)
it uses the mean weights μ alone, which is what a deterministic policy acts
with. Noise changes only through ``reset_noise(generator)``, so whoever owns
the generator owns the randomness (an agent's act() and learn() use
different ones); it is not part of the state dict.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FACTORED_ROWS = 16  # below this many input rows the noise is applied in factored form


class NoisyLinear(nn.Module):
    """``nn.Linear`` with factorized Gaussian noise on its weights and bias."""

    def __init__(self, in_features: int, out_features: int, sigma_0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.sigma_0 = float(sigma_0)
        self.weight_mu = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.weight_sigma = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias_mu = nn.Parameter(torch.empty(self.out_features))
        self.bias_sigma = nn.Parameter(torch.empty(self.out_features))
        # f(ε_in) and f(ε_out); zero until the first reset_noise().
        self.register_buffer("eps_in", torch.zeros(self.in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(self.out_features), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound)
            self.bias_mu.uniform_(-bound, bound)
            self.weight_sigma.fill_(self.sigma_0 * bound)
            self.bias_sigma.fill_(self.sigma_0 * bound)

    @property
    def noise_size(self) -> int:
        """How many standard normal draws one resampling takes."""
        return self.in_features + self.out_features

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw new ε_in, ε_out from ``generator`` (a CPU generator)."""
        reset_noise([self], generator)

    def _set_scaled_noise(self, scaled: torch.Tensor) -> None:
        """Take ``noise_size`` values of f(ε), already on this layer's device."""
        self.eps_in = scaled[: self.in_features]
        self.eps_out = scaled[self.in_features :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        if x.shape[0] < FACTORED_ROWS:
            noise = F.linear(x * self.eps_in, self.weight_sigma, self.bias_sigma) * self.eps_out
            return F.linear(x, self.weight_mu, self.bias_mu) + noise
        weight = torch.addcmul(
            self.weight_mu, self.weight_sigma, torch.outer(self.eps_out, self.eps_in)
        )
        bias = torch.addcmul(self.bias_mu, self.bias_sigma, self.eps_out)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma_0={self.sigma_0}"


def noisy_layers(module: nn.Module) -> list[NoisyLinear]:
    """Every NoisyLinear inside ``module``, in registration order."""
    return [m for m in module.modules() if isinstance(m, NoisyLinear)]


def reset_noise(layers: list[NoisyLinear], generator: torch.Generator | None = None) -> None:
    """Resample every layer's noise with one draw from ``generator``."""
    if not layers:
        return
    normal = torch.randn(sum(layer.noise_size for layer in layers), generator=generator)
    scaled = (normal.sign() * normal.abs().sqrt()).to(layers[0].eps_in.device)  # f(x) = sgn(x)√|x|
    start = 0
    for layer in layers:
        layer._set_scaled_noise(scaled[start : start + layer.noise_size])
        start += layer.noise_size
