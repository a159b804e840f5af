"""optix-torch: PyTorch agents for the optix training loop.

Importing this package imports no torch: the plugin registers algorithms by
name, and classes load on first access (``from optix_torch import TorchPPOAgent``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optix_core import frameworks
from optix_core.lazy import lazy_exports

# Before anything imports triton: TensorFlow and torch's triton in one process (DESIGN.md).
frameworks.install()

_EXPORTS = {
    "TorchAgent": ".algorithms.a2c",
    "TorchAgentBase": ".base",
    "TorchEvaluator": ".evaluator",
    "TorchPPOAgent": ".algorithms.ppo",
    "TorchGaussianPPOAgent": ".algorithms.ppo",
    "TorchDQNAgent": ".algorithms.dqn",
    "QNetwork": ".algorithms.dqn",
    "TorchRainbowDQNAgent": ".algorithms.rainbow",
    "RainbowQNetwork": ".algorithms.rainbow",
    "NoisyLinear": ".algorithms.noisy",
    "TorchSACAgent": ".algorithms.sac",
    "TorchTD3Agent": ".algorithms.td3",
    "TorchRecurrentPPOAgent": ".algorithms.recurrent_ppo",
    "LSTMActorCritic": ".algorithms.recurrent_ppo",
    "resolve_device": ".device",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from optix_torch.algorithms.a2c import TorchAgent
    from optix_torch.algorithms.dqn import QNetwork, TorchDQNAgent
    from optix_torch.algorithms.noisy import NoisyLinear
    from optix_torch.algorithms.ppo import TorchGaussianPPOAgent, TorchPPOAgent
    from optix_torch.algorithms.rainbow import RainbowQNetwork, TorchRainbowDQNAgent
    from optix_torch.algorithms.recurrent_ppo import LSTMActorCritic, TorchRecurrentPPOAgent
    from optix_torch.algorithms.sac import TorchSACAgent
    from optix_torch.algorithms.td3 import TorchTD3Agent
    from optix_torch.base import TorchAgentBase
    from optix_torch.device import resolve_device
    from optix_torch.evaluator import TorchEvaluator

__all__ = [
    "LSTMActorCritic",
    "NoisyLinear",
    "QNetwork",
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
