"""optix-jax: JAX (Flax NNX + optax) agents for the optix training loop.

Importing this package imports no jax: the plugin registers algorithms by
name, and classes load on first access (``from optix_jax import FlaxPPOAgent``).
To export a new class, add its name and module to ``_EXPORTS``, the
``TYPE_CHECKING`` imports and ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optix_core.lazy import lazy_exports

_EXPORTS = {
    "FlaxAgent": ".algorithms.a2c",
    "FlaxDQNAgent": ".algorithms.dqn",
    "FlaxPPOAgent": ".algorithms.ppo",
    "FlaxGaussianPPOAgent": ".algorithms.ppo",
    "FlaxSACAgent": ".algorithms.sac",
    "FlaxTD3Agent": ".algorithms.td3",
    "CompiledPipeline": ".pipelines.compiled",
    "JaxAgentBase": ".base",
    "set_learning_rate": ".base",
    "FlaxEvaluator": ".evaluator",
    "UnsafeCheckpointError": ".serialization",
    "resolve_device": ".device",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from optix_jax.algorithms.a2c import FlaxAgent
    from optix_jax.algorithms.dqn import FlaxDQNAgent
    from optix_jax.algorithms.ppo import FlaxGaussianPPOAgent, FlaxPPOAgent
    from optix_jax.algorithms.sac import FlaxSACAgent
    from optix_jax.algorithms.td3 import FlaxTD3Agent
    from optix_jax.base import JaxAgentBase, set_learning_rate
    from optix_jax.device import resolve_device
    from optix_jax.evaluator import FlaxEvaluator
    from optix_jax.pipelines.compiled import CompiledPipeline
    from optix_jax.serialization import UnsafeCheckpointError

__all__ = [
    "CompiledPipeline",
    "FlaxAgent",
    "FlaxDQNAgent",
    "FlaxEvaluator",
    "FlaxGaussianPPOAgent",
    "FlaxPPOAgent",
    "FlaxSACAgent",
    "FlaxTD3Agent",
    "JaxAgentBase",
    "UnsafeCheckpointError",
    "resolve_device",
    "set_learning_rate",
]
