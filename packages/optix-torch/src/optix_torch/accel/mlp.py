"""The MLP accelerator: a whole MLP as one autograd node, its backward written by hand.

Through plain autograd an L-layer MLP is 2L nodes (a matrix product and an
activation per layer) recorded and replayed on every minibatch; on small
networks that bookkeeping costs more than the arithmetic. Here the forward
pass runs without recording and keeps each layer's input; the backward is
the chain rule written out. For layer k with input h_k and pre-activation
a_k = h_k W_k + b_k:

    ∂L/∂W_k = h_kᵀ ∂L/∂a_k,   ∂L/∂b_k = Σ_rows ∂L/∂a_k,
    ∂L/∂a_{k−1} = (∂L/∂a_k W_kᵀ) ⊙ act′(a_{k−1})

with tanh′ = 1 − h_k² and relu′ = [h_k > 0] read off the saved output of
layer k − 1. The algorithm's loss stays in autograd; only the network's part
of the graph is replaced, so every algorithm keeps one loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from optix_torch.accel import available

# From this many elements up, tanh is computed as 2σ(2x) − 1: the same
# function (to float32 rounding), and torch's CPU sigmoid kernel is about
# twice as fast as its tanh; below it the single tanh kernel costs less.
SIGMOID_TANH_FROM = 4096


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place."""
    if x.device.type == "cpu" and x.numel() >= SIGMOID_TANH_FROM:
        return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return x.tanh_()


def applies(module: nn.Module, params: list[torch.Tensor] | None = None) -> bool:
    """Whether the accelerator may replace ``module``'s autograd graph: the
    internals it needs are there, no hooks would be skipped, and no parameter
    is shared (weight tying would need its gradients summed). ``params``:
    the module's parameters, when the caller has them at hand."""
    if not available():
        return False
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks:
        return False
    if params is None:
        params = [p for _, p in module.named_parameters(remove_duplicate=False)]
    return len({id(p) for p in params}) == len(params)


def stacked_forward(
    x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], activation: str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Towers of MLPs stored as ``[towers, fan_in, fan_out]`` weights, run by batched
    matmuls without recording: the output ``[towers, B, out]`` and each layer's input."""
    h = x.unsqueeze(0).expand(weights[0].shape[0], -1, -1)  # every tower reads x
    inputs = []
    last = len(weights) - 1
    with torch.no_grad():
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            inputs.append(h)
            h = torch.baddbmm(b, h, w)
            if k < last:
                h = tanh_(h) if activation == "tanh" else h.relu_()
    return h, inputs


def numpy_forward(
    x: np.ndarray, weights: list[torch.Tensor], biases: list[torch.Tensor], activation: str
) -> np.ndarray:
    """``stacked_forward`` for acting: numpy over the CPU parameters' own memory
    (no copy). On the handful of rows an acting step has, torch's dispatch of
    each operation costs more than the arithmetic; numpy's costs a third of it."""
    h = x
    last = len(weights) - 1
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = np.matmul(h, w.detach().numpy())  # [B, in] @ [towers, in, out]: every tower
        h += b.detach().numpy()
        if k < last:
            np.tanh(h, out=h) if activation == "tanh" else np.maximum(h, 0.0, out=h)
    return h


@torch.no_grad()
def stacked_backward(
    inputs: list[torch.Tensor],
    weights: list[torch.Tensor],
    grad_out: torch.Tensor,
    activation: str,
    weight_grads: list[torch.Tensor],
    bias_grads: list[torch.Tensor],
    input_grad: bool = False,
) -> torch.Tensor | None:
    """Backpropagate ``grad_out`` (∂L/∂output) through the towers, writing ∂L/∂W
    and ∂L/∂b into the given tensors; returns ∂L/∂x when ``input_grad``."""
    grad = grad_out
    for k in range(len(weights) - 1, -1, -1):
        torch.bmm(inputs[k].transpose(1, 2), grad, out=weight_grads[k])
        torch.sum(grad, dim=1, keepdim=True, out=bias_grads[k])
        if k or input_grad:
            grad = torch.bmm(grad, weights[k].transpose(1, 2))
        if k:
            if activation == "tanh":
                grad = torch.ops.aten.tanh_backward(grad, inputs[k])
            else:
                grad = torch.ops.aten.threshold_backward(grad, inputs[k], 0.0)
    return grad.sum(0) if input_grad else None


class _StackedMLP(torch.autograd.Function):
    """``stacked_forward`` as one autograd node whose backward is ``stacked_backward``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, activation: str, *params: torch.Tensor) -> torch.Tensor:
        n = len(params) // 2
        out, ctx.inputs = stacked_forward(x, params[:n], params[n:], activation)
        ctx.weights, ctx.activation = params[:n], activation
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        weight_grads = [torch.empty_like(w) for w in ctx.weights]
        bias_grads = [
            torch.empty(w.shape[0], 1, w.shape[2], dtype=w.dtype, device=w.device)
            for w in ctx.weights
        ]
        grad_x = stacked_backward(
            ctx.inputs,
            ctx.weights,
            grad_out,
            ctx.activation,
            weight_grads,
            bias_grads,
            input_grad=ctx.needs_input_grad[0],
        )
        return (grad_x, None, *weight_grads, *bias_grads)


def stacked_mlp(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    activation: str,
) -> torch.Tensor:
    """``[towers, B, out]``: the towers' outputs, one autograd node for all layers."""
    return _StackedMLP.apply(x, activation, *weights, *biases)


# ---- the Sequential form: DQN's TD update on a plain nn.Sequential ---------------------
#
# A Q-network of the form Linear (ReLU|Tanh Linear)* (the default on flat
# vectors, and many users') trains on the TD loss, whose gradient with respect
# to the network's output is as short as the loss itself. So here the whole
# update is written by hand, loss included, and written straight into the flat
# gradient buffer: no graph is recorded at all (as accel.ppo does for PPO's).
# tests/test_accel.py checks it against autograd with uniform and importance
# weights, Huber and squared error.

SEQUENTIAL_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh"}


class SequentialMLP:
    """Forward and backward passes of an ``nn.Sequential`` MLP written out by hand.

    With z_0 = x, h_i = z_i W_iᵀ + b_i and z_{i+1} = σ(h_i):

        ∂L/∂W_i = g_iᵀ z_i,   ∂L/∂b_i = Σ_rows g_i,   g_{i−1} = (g_i W_i) ⊙ σ'(h_{i−1})

    starting from g_last = ∂L/∂q, which for the TD loss
    L = Σ_i w_i ℓ(Q(s_i, a_i) − y_i) / B is nonzero only in the taken
    action's column: w · clip(q − y, −1, 1)/B for the Huber loss ℓ,
    w · 2(q − y)/B for the squared error.

    ``of`` returns None (the caller then trains through autograd) for any other
    network, and where the hand-written path would differ from autograd's: a
    layer or parameter that appears twice (weight tying: autograd sums its
    gradients), hooks on the network, its layers or its parameters (autograd
    would call them), frozen parameters, or ``accel.available()`` False.
    """

    def __init__(self, linears: list[nn.Linear], activations: list[str]) -> None:
        self.linears, self.activations = linears, activations

    @classmethod
    def of(cls, network: nn.Module) -> SequentialMLP | None:
        if type(network) is not nn.Sequential or len(network) % 2 == 0:
            return None
        layers = list(network)
        linears = layers[0::2]
        activations = [SEQUENTIAL_ACTIVATIONS.get(type(m)) for m in layers[1::2]]
        if any(type(m) is not nn.Linear for m in linears) or None in activations:
            return None
        if len({id(m) for m in layers}) != len(layers):  # a layer used twice
            return None
        params = [p for _, p in network.named_parameters(remove_duplicate=False)]
        if not applies(network, params) or not all(applies(m) for m in layers):
            return None  # unavailable, hooked, or a parameter tied to another
        if any(not p.requires_grad or _has_hooks(p) for p in params):
            return None
        return cls(linears, activations)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's input, then the output: [z_0, z_1, ..., q]."""
        values = [x]
        for i, layer in enumerate(self.linears):
            if layer.bias is None:
                h = torch.mm(values[-1], layer.weight.t())
            else:
                h = torch.addmm(layer.bias, values[-1], layer.weight.t())
            if i < len(self.activations):
                h = h.relu() if self.activations[i] == "relu" else h.tanh()
            values.append(h)
        return values

    def q_values(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[-1]

    @torch.no_grad()
    def td_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        target: torch.Tensor,
        weights: torch.Tensor | None,
        huber: bool,
        grads: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ∂L/∂θ into ``grads`` (the parameters' order); return L and q − y."""
        values = self.forward(obs)
        q = values[-1]
        index = actions.unsqueeze(1)
        q_taken = q.gather(1, index).squeeze(1)
        error = q_taken - target
        batch = float(len(error))
        if huber:
            per_sample = nn.functional.smooth_l1_loss(q_taken, target, reduction="none")
            slope = error.clamp(-1.0, 1.0)
        else:
            per_sample = error.square()
            slope = error * 2.0
        if weights is not None:
            per_sample, slope = per_sample * weights, slope * weights
        loss = per_sample.mean()
        g = torch.zeros_like(q).scatter_(1, index, slope.div_(batch).unsqueeze(1))
        slot = len(grads)
        for i in range(len(self.linears) - 1, -1, -1):
            layer = self.linears[i]
            if layer.bias is not None:
                slot -= 1
                torch.sum(g, 0, out=grads[slot])
            slot -= 1
            torch.mm(g.t(), values[i], out=grads[slot])
            if i:
                g = torch.mm(g, layer.weight)
                if self.activations[i - 1] == "relu":
                    g = torch.ops.aten.threshold_backward(g, values[i], 0.0)
                else:
                    g = torch.ops.aten.tanh_backward(g, values[i])
        return loss, error


def _has_hooks(param: torch.Tensor) -> bool:
    """Whether autograd would call hooks registered on ``param`` (``register_hook`` and the like)."""
    return bool(getattr(param, "_backward_hooks", None)) or bool(
        getattr(param, "_post_accumulate_grad_hooks", None)
    )
