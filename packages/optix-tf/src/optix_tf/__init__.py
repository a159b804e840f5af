"""optix-tf: TensorFlow agents for the optix training loop.

Importing this package imports no tensorflow: the plugin registers algorithms
by name, and classes load on first access (``from optix_tf import TFAgentBase``).
To export a new class, add its name and module to ``_EXPORTS``, the
``TYPE_CHECKING`` imports and ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optix_core import frameworks
from optix_core.lazy import lazy_exports

# Before anything imports tensorflow: TensorFlow and torch's triton in one process (DESIGN.md).
frameworks.install()

_EXPORTS = {
    "TFAgent": ".algorithms.a2c",
    "TFDQNAgent": ".algorithms.dqn",
    "TFPPOAgent": ".algorithms.ppo",
    "TFGaussianPPOAgent": ".algorithms.ppo",
    "TFRainbowDQNAgent": ".algorithms.rainbow",
    "TFRecurrentPPOAgent": ".algorithms.recurrent_ppo",
    "TFSACAgent": ".algorithms.sac",
    "TFTD3Agent": ".algorithms.td3",
    "TFTDDAgent": ".algorithms.td3",
    "TFAgentBase": ".base",
    "set_learning_rate": ".base",
    "TFEvaluator": ".evaluator",
    "UnsafeCheckpointError": ".serialization",
    "resolve_device": ".device",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from optix_tf.algorithms.a2c import TFAgent
    from optix_tf.algorithms.dqn import TFDQNAgent
    from optix_tf.algorithms.ppo import TFGaussianPPOAgent, TFPPOAgent
    from optix_tf.algorithms.rainbow import TFRainbowDQNAgent
    from optix_tf.algorithms.recurrent_ppo import TFRecurrentPPOAgent
    from optix_tf.algorithms.sac import TFSACAgent
    from optix_tf.algorithms.td3 import TFTD3Agent, TFTDDAgent
    from optix_tf.base import TFAgentBase, set_learning_rate
    from optix_tf.device import resolve_device
    from optix_tf.evaluator import TFEvaluator
    from optix_tf.serialization import UnsafeCheckpointError

__all__ = [
    "TFAgent",
    "TFAgentBase",
    "TFDQNAgent",
    "TFEvaluator",
    "TFGaussianPPOAgent",
    "TFPPOAgent",
    "TFRainbowDQNAgent",
    "TFRecurrentPPOAgent",
    "TFSACAgent",
    "TFTD3Agent",
    "TFTDDAgent",
    "UnsafeCheckpointError",
    "resolve_device",
    "set_learning_rate",
]
