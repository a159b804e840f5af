"""optix-torch: PyTorch agents for the optix training loop.

Importing this package imports no torch: the plugin registers algorithms by
name, and classes load on first access (``from optix_torch import TorchPPOAgent``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TorchAgent": "a2c",
    "TorchAgentBase": "base",
    "TorchEvaluator": "evaluator",
    "TorchPPOAgent": "ppo",
    "TorchGaussianPPOAgent": "ppo_continuous",
    "TorchDQNAgent": "dqn",
    "TorchRainbowDQNAgent": "rainbow",
    "RainbowQNetwork": "rainbow",
    "NoisyLinear": "noisy",
    "TorchSACAgent": "sac",
    "TorchTD3Agent": "td3",
    "TorchRecurrentPPOAgent": "recurrent_ppo",
    "LSTMActorCritic": "recurrent_ppo",
    "resolve_device": "device",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optix_torch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optix_torch.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from optix_torch.a2c import TorchAgent
    from optix_torch.base import TorchAgentBase
    from optix_torch.device import resolve_device
    from optix_torch.dqn import TorchDQNAgent
    from optix_torch.evaluator import TorchEvaluator
    from optix_torch.noisy import NoisyLinear
    from optix_torch.ppo import TorchPPOAgent
    from optix_torch.ppo_continuous import TorchGaussianPPOAgent
    from optix_torch.rainbow import RainbowQNetwork, TorchRainbowDQNAgent
    from optix_torch.recurrent_ppo import LSTMActorCritic, TorchRecurrentPPOAgent
    from optix_torch.sac import TorchSACAgent
    from optix_torch.td3 import TorchTD3Agent

__all__ = [
    "LSTMActorCritic",
    "NoisyLinear",
    "RainbowQNetwork",
    "TorchAgent",
    "TorchAgentBase",
    "TorchDQNAgent",
    "TorchEvaluator",
    "TorchGaussianPPOAgent",
    "TorchPPOAgent",
    "TorchRainbowDQNAgent",
    "TorchRecurrentPPOAgent",
    "TorchSACAgent",
    "TorchTD3Agent",
    "resolve_device",
]
