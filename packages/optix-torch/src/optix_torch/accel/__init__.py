"""Accelerators: hand-written fast paths that give the plain path's numbers, faster.

On the networks reinforcement learning usually trains (MLPs of a few
hundred units, minibatches of a few hundred rows) an update costs as much in
per-operation overhead as in arithmetic. Two accelerators cut it:

- ``mlp``: the default MLP's forward and backward written out by hand (one
  autograd node for the whole network instead of one per layer and
  activation), for PPO's and A2C's ``TwinMLP`` and DQN's plain
  ``nn.Sequential`` Q-network; and PPO's acting on the CPU run in numpy over
  the parameters' memory, where a handful of rows costs less than torch's
  dispatch;
- ``optim``: Adam's step on torch's fused kernel without
  ``Optimizer.step``'s per-call bookkeeping, and every gradient a view of
  one flat buffer (zeroed, measured and clipped in one kernel each).

Both lean on torch internals (``torch._fused_adam_``, ``aten.tanh_backward``,
``aten.threshold_backward``, the optimizer hook registries). They are used
only where they apply and only when those internals are present
(``available()``), and ``OPTIX_TORCH_ACCEL=0`` switches them off; otherwise
the algorithms train through autograd and ``torch.optim.Adam``.
``tests/test_accel.py`` checks every accelerated update against the plain one.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.optim.optimizer as optimizer_module

ENV_SWITCH = "OPTIX_TORCH_ACCEL"


@functools.cache
def _internals_present() -> bool:
    return (
        hasattr(torch, "_fused_adam_")
        and hasattr(torch.ops.aten, "tanh_backward")
        and hasattr(torch.ops.aten, "threshold_backward")
        and hasattr(optimizer_module, "_global_optimizer_pre_hooks")
        and hasattr(optimizer_module, "_global_optimizer_post_hooks")
    )


def available() -> bool:
    """Whether the accelerators may run: the torch internals they need are
    present and ``OPTIX_TORCH_ACCEL`` is not "0"."""
    return os.environ.get(ENV_SWITCH, "1") != "0" and _internals_present()
