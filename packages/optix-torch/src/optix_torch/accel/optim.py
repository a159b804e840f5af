"""The optimizer accelerator: flat gradients and a lean Adam step.

``FlatGradients`` makes zeroing, measuring and clipping the gradients one
kernel each; ``LeanAdam`` takes Adam's step on torch's fused kernel without
``Optimizer.step``'s per-call bookkeeping. Both are exactly torch's
arithmetic (``tests/test_accel.py`` compares them). ``adam`` and
``Gradients`` pick them where they apply and fall back to torch's own.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.optim.optimizer as optim_hooks
from torch import nn

from optix_torch.accel import available


class FlatGradients:
    """Every parameter's ``.grad`` a view of one flat buffer.

    Autograd accumulates into an existing ``.grad`` in place, so the views
    survive ``backward``. A parameter the loss does not reach would keep a
    zero gradient rather than none (and Adam would still move it), so this
    serves only networks whose every parameter each loss reaches: the
    accelerated MLPs (``Gradients.for_network`` decides).
    Parameters on several devices or of several dtypes are left to the
    per-parameter path (``bind`` returns False, and ``zero`` and ``clip``
    fall back to torch's per-parameter calls).
    """

    def __init__(self, params: Any) -> None:
        self.params: list[nn.Parameter] = [p for p in params if p.requires_grad]
        self.buffer: torch.Tensor | None = None
        self.views: list[torch.Tensor] = []

    def bind(self) -> bool:
        """Point every ``.grad`` at its view (again, if something replaced it,
        on the parameters' device if they moved); False where they cannot share one."""
        params = self.params
        if not params or any(
            p.device != params[0].device or p.dtype != params[0].dtype for p in params
        ):
            self.buffer, self.views = None, []
            return False
        if self.buffer is None or self.buffer.device != params[0].device:
            sizes = [p.numel() for p in params]
            self.buffer = torch.zeros(sum(sizes), dtype=params[0].dtype, device=params[0].device)
            self.views = [
                v.view_as(p) for v, p in zip(self.buffer.split(sizes), params, strict=True)
            ]
        for p, view in zip(params, self.views, strict=True):
            if p.grad is not view:
                p.grad = view
        return True

    def zero(self) -> None:
        # Unbound, or someone (optimizer.zero_grad()) replaced the gradients: bind.
        stale = self.buffer is None or self.params[0].grad is not self.views[0]
        if stale and not self.bind():
            for p in self.params:
                p.grad = None
            return
        self.buffer.zero_()

    def clip(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a global L2 norm of at most ``max_norm``; return
        the norm before. ``clip_grad_norm_``'s arithmetic (coefficient
        max_norm / (‖g‖ + 1e-6), capped at 1), with no host synchronisation:
        a NaN gradient makes NaN weights, which the loop detects."""
        if self.buffer is None:
            return nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)
        norm = torch.linalg.vector_norm(self.buffer)
        self.buffer.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
        return norm

    def release(self) -> None:
        """Let go of the buffer (``teardown``); ``bind`` makes a new one."""
        for p, view in zip(self.params, self.views, strict=False):  # unbound: no views
            if p.grad is view:
                p.grad = None
        self.buffer, self.views = None, []


def adam(params: Any, learning_rate: float, eps: float = 1e-8) -> torch.optim.Optimizer:
    """Adam: ``LeanAdam`` where the accelerators are available and the fused
    kernel serves these parameters, else torch's foreach Adam (the same steps)."""
    params = list(params)
    if available():
        try:
            return LeanAdam(params, lr=learning_rate, eps=eps)
        except (RuntimeError, ValueError):  # a device or dtype the fused kernel lacks
            pass
    return torch.optim.Adam(params, lr=learning_rate, eps=eps, foreach=True)


def optimizer_step(optimizer: torch.optim.Optimizer) -> Any:
    """The cheapest call that takes one step of ``optimizer``."""
    if isinstance(optimizer, LeanAdam) and available():
        return optimizer.lean_step
    return optimizer.step


class Gradients:
    """Zeroing and global-norm clipping of a set of parameters' gradients.

    The plain path is torch's (``.grad`` set to None, ``clip_grad_norm_``);
    ``flat=True`` puts them in one ``FlatGradients`` buffer, for networks
    whose every parameter each loss reaches.
    """

    def __init__(self, params: Any, flat: bool = False) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.flat = FlatGradients(self.params) if flat and available() else None

    def zero(self) -> None:
        if self.flat is not None:
            self.flat.zero()
            return
        for p in self.params:
            p.grad = None

    def clip(self, max_norm: float) -> torch.Tensor:
        """Scale to a global L2 norm of at most ``max_norm``; the norm before."""
        if self.flat is not None:
            return self.flat.clip(max_norm)
        return nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)

    def release(self) -> None:
        if self.flat is not None:
            self.flat.release()


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` with a lighter step, ``lean_step``.

    The same fused kernel, state and checkpoint format as torch's fused Adam
    (a state dict loads into either). ``lean_step`` goes straight to the kernel
    with the state tensors gathered once and every parameter's step counter a
    view of one tensor (one increment instead of one per parameter), skipping
    ``Optimizer.step``'s per-call bookkeeping (hook dispatch, profiler labels,
    grouping tensors by device), which on a small network costs more than the
    update's arithmetic. Hyperparameters are read from the param groups at
    every step, so a new learning rate applies at once. ``step`` is torch's.
    What the lean path does not cover (step hooks, amsgrad, maximize,
    differentiable, capturable, parameters without gradients) goes through
    ``step``.
    """

    def __init__(self, params: Any, lr: float = 1e-3, eps: float = 1e-8, **kwargs: Any) -> None:
        self._plan: list[tuple[dict, list, list, list, torch.Tensor, list]] | None = None
        super().__init__(params, lr=lr, eps=eps, fused=True, **kwargs)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._plan = None
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._plan = None
        super().load_state_dict(state_dict)

    def _make_plan(self) -> list[tuple[dict, list, list, list, torch.Tensor, list]] | None:
        plan = []
        for group in self.param_groups:
            params = list(group["params"])
            if any(group.get(k) for k in LEAN_EXCLUDES) or not params:
                return None
            device = params[0].device
            if any(p.device != device for p in params):
                return None
            counters = torch.zeros(len(params), dtype=torch.float32, device=device)
            for i, p in enumerate(params):
                state = self.state[p]
                if not state:  # what torch.optim.Adam(fused=True) initialises
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                else:
                    counters[i] = state["step"]
                state["step"] = counters[i]  # a view: counters.add_(1) steps them all
            states = [self.state[p] for p in params]
            plan.append(
                (
                    group,
                    params,
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    counters,
                    [s["step"] for s in states],
                )
            )
        return plan

    def _hooked(self) -> bool:
        return bool(
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or optim_hooks._global_optimizer_pre_hooks  # present: accel.available()
            or optim_hooks._global_optimizer_post_hooks
        )

    def lean_step(self) -> None:
        """One Adam step over every parameter's ``.grad``."""
        plan = self._plan
        # load_state_dict rebuilds the state and teardown empties it: check it is ours.
        if plan is None or any(
            self.state[params[0]].get("step") is not steps[0] for _, params, _, _, _, steps in plan
        ):
            plan = self._plan = self._make_plan()
        if (
            plan is None
            or self._hooked()
            or any(any(group.get(k) for k in LEAN_EXCLUDES) for group, *_ in plan)
        ):
            self.step()
            return
        grads = [[p.grad for p in params] for _, params, _, _, _, _ in plan]
        if any(g is None for group_grads in grads for g in group_grads):
            self.step()
            return
        with torch.no_grad():
            for (group, params, exp_avgs, exp_avg_sqs, counters, steps), group_grads in zip(
                plan, grads, strict=True
            ):
                counters.add_(1.0)
                beta1, beta2 = group["betas"]
                torch._fused_adam_(
                    params,
                    group_grads,
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    lr=float(group["lr"]),
                    beta1=float(beta1),
                    beta2=float(beta2),
                    weight_decay=float(group["weight_decay"]),
                    eps=float(group["eps"]),
                    amsgrad=False,
                    maximize=False,
                )


LEAN_EXCLUDES = ("amsgrad", "maximize", "differentiable", "capturable", "decoupled_weight_decay")
