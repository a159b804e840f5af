"""TorchAgentBase: the plumbing every PyTorch agent shares.

Device placement, hyperparameter validation, the agent's own random
generators, checkpoints (safetensors for weights, ``weights_only`` loading
for optimizer state) and teardown. An algorithm subclass declares its
networks and optimizers and writes ``act``, ``act_info`` and ``learn``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from optix_core.agent import BaseAgent
from optix_core.hyperparams import Bound, check_hyperparams
from optix_core.types import HyperparamSet
from optix_torch.device import resolve_device
from optix_torch.serialization import load_optimizer, load_tensors, save_optimizer, save_tensors

STATE = "state.json"


class TorchAgentBase(BaseAgent):
    algorithm: ClassVar[str] = "torch-agent"
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    BOUNDS: ClassVar[dict[str, Bound]] = {}
    # What the loop may tune while training (the config module's ONLINE_SEARCH_SPACE).
    ONLINE_SEARCH_SPACE: ClassVar[dict[str, tuple]] = {}

    def __init__(
        self,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        if isinstance(hyperparams, HyperparamSet):
            params, episode_id = hyperparams.params, hyperparams.episode_id
        else:
            params, episode_id = (hyperparams or {}), 0
        checked = check_hyperparams({**self.DEFAULTS, **params}, self.BOUNDS, self.algorithm)
        self._hp = HyperparamSet(checked, episode_id)
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

    def extra_state(self) -> dict[str, Any]:
        """JSON-ready state beyond weights (counters, schedules) for exact resume."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` returned."""

    def save_extra(self, path: Path) -> None:
        """Write files beyond weights (a replay buffer) into the checkpoint."""

    def load_extra(self, path: Path) -> None:
        """Read what ``save_extra`` wrote."""

    # ---- BaseAgent -----------------------------------------------------------

    @property
    def hp(self) -> dict[str, Any]:
        return self._hp.params

    def get_hyperparams(self) -> HyperparamSet:
        return self._hp.copy()

    @property
    def search_space(self) -> dict[str, tuple]:
        """What the loop may tune while training: ``ONLINE_SEARCH_SPACE``."""
        return dict(self.ONLINE_SEARCH_SPACE)

    @property
    def hyperparam_bounds(self) -> dict[str, Bound]:
        """The valid ranges ``set_hyperparams`` checks: ``BOUNDS``."""
        return dict(self.BOUNDS)

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        merged = {**self._hp.params, **hyperparams.params}
        self._hp = HyperparamSet(
            check_hyperparams(merged, self.BOUNDS, self.algorithm), hyperparams.episode_id
        )
        self.apply_hyperparams()

    def save_weights(self, path: str) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(directory, self.modules(), self._generators())
        for name, optimizer in self.optimizers().items():
            save_optimizer(directory, name, optimizer)
        state = {
            "algorithm": self.algorithm,
            "hyperparams": self._hp.to_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "extra": self.extra_state(),
        }
        (directory / STATE).write_text(json.dumps(state))
        self.save_extra(directory)

    def load_weights(self, path: str) -> None:
        directory = Path(path)
        if not (directory / STATE).is_file():
            raise FileNotFoundError(f"{directory} holds no {self.algorithm} checkpoint")
        state = json.loads((directory / STATE).read_text())
        if state.get("algorithm") != self.algorithm:
            raise ValueError(
                f"{directory} holds a {state.get('algorithm')!r} checkpoint, not {self.algorithm!r}"
            )
        load_tensors(directory, self.modules(), self._generators(), self.algorithm)
        for name, optimizer in self.optimizers().items():
            load_optimizer(directory, name, optimizer, self.device)
        self.rng.bit_generator.state = state["numpy_rng"]
        self._hp = HyperparamSet.from_dict(state["hyperparams"])
        self.apply_hyperparams()
        self.load_extra_state(state.get("extra", {}))
        self.load_extra(directory)

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
