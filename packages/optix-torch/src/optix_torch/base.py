"""TorchAgentBase: the plumbing every PyTorch agent shares.

Device placement, hyperparameter validation, the agent's own random
generators, checkpoints (safetensors for weights, ``weights_only`` loading
for optimizer state) and teardown. An algorithm subclass declares its
networks and optimizers and writes ``act``, ``act_info`` and ``learn``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from optix_core.configured_agent import STATE, ConfiguredAgent
from optix_core.types import HyperparamSet
from optix_torch.device import resolve_device
from optix_torch.serialization import load_optimizer, load_tensors, save_optimizer, save_tensors

__all__ = ["STATE", "TorchAgentBase", "set_learning_rate"]


def _keep_optimizers_off_dynamo() -> None:
    """torch wraps Optimizer's bookkeeping methods (``add_param_group``,
    ``zero_grad``, ``state_dict``, ``load_state_dict``) in ``torch._disable_dynamo``,
    which imports ``torch._dynamo`` on their first call only to keep them out of
    ``torch.compile``'s graphs: 6 s of every run's start-up on a CPU machine.
    optix compiles no optimizer, so each method is marked as already disabled
    (the wrapper's cache of ``torch._dynamo.disable(fn)``) with the method itself.
    Where a later torch changes the mechanism this does nothing, and the import
    merely costs its time again."""
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        fn = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if fn is not None and not hasattr(fn, "__dynamo_disable"):
            fn.__dynamo_disable = fn


_keep_optimizers_off_dynamo()


class TorchAgentBase(ConfiguredAgent):
    algorithm: ClassVar[str] = "torch-agent"
    backend: ClassVar[str] = "torch"

    def __init__(
        self,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.init_hyperparams(hyperparams)
        # The agent owns its randomness: sampling and minibatch order never touch
        # the global generators, so a checkpoint resumes the exact same stream.
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device="cpu")  # rollouts and minibatches
        self.generator.manual_seed(int(self.rng.integers(2**63 - 1)))
        self.act_generator = torch.Generator(device="cpu")  # act(): never touches training
        self.act_generator.manual_seed(int(self.rng.integers(2**63 - 1)))

    # ---- what subclasses declare ------------------------------------------

    def modules(self) -> dict[str, nn.Module]:
        """The networks whose weights make up the policy (and its critics)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers whose state a checkpoint keeps."""
        return {}

    def apply_hyperparams(self) -> None:
        """Push hyperparameters into the optimizers; called after every change."""
        lr = self._hp.params.get("learning_rate")
        if lr is not None:
            for optimizer in self.optimizers().values():
                set_learning_rate(optimizer, lr)

    # ---- checkpoints -----------------------------------------------------------

    def save_weights(self, path: str) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(directory, self.modules(), self._generators())
        for name, optimizer in self.optimizers().items():
            save_optimizer(directory, name, optimizer)
        self.write_state(directory, {"numpy_rng": self.rng})
        self.save_extra(directory)

    def load_weights(self, path: str) -> None:
        directory = Path(path)
        state = self.read_state(directory, ("numpy_rng",))
        load_tensors(directory, self.modules(), self._generators(), self.algorithm)
        for name, optimizer in self.optimizers().items():
            load_optimizer(directory, name, optimizer, self.device)
        self.restore_state(state, {"numpy_rng": self.rng}, directory)

    def teardown(self) -> None:
        """Move every network to the CPU, drop optimizer state, free cached GPU memory."""
        for module in self.modules().values():
            module.to("cpu")
        for optimizer in self.optimizers().values():
            optimizer.state.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- helpers ---------------------------------------------------------

    def _generators(self) -> dict[str, torch.Generator]:
        return {"generator": self.generator, "act_generator": self.act_generator}

    def to_tensor(self, array: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One host-to-device copy of a numpy batch."""
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    """Make a new learning rate take effect at the next step."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(learning_rate)
        else:
            group["lr"] = learning_rate
