"""The JAX layer of the replay every off-policy agent shares: DQN, SAC, TD3.

``JaxReplayAgent`` is optix-core's ``off_policy.ReplayAgentMixin`` (the
replay memory, Stable-Baselines3's ``train_freq`` / ``gradient_steps`` /
``learning_starts`` schedule, its counters and their checkpoint, all in
numpy and the same on every backend) over ``JaxAgentBase``. What is JAX's
own is the crossing: each block of host minibatches the schedule draws
becomes JAX arrays on the agent's device, one transfer per field, shaped
``[count, batch_size, ...]`` so that a jitted update can ``jax.lax.scan``
over the block's minibatches in one call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from optix_core.off_policy import PACK_BYTES, HostMinibatches, ReplayAgentMixin
from optix_core.policies.observations import unpacked
from optix_core.types import EpisodeData
from optix_jax.base import JaxAgentBase
from optix_jax.policies import observations as O


class JaxReplayAgent(ReplayAgentMixin, JaxAgentBase):
    """optix-core's replay memory, update schedule and counters, on JAX arrays.

    A subclass calls the constructor (``JaxAgentBase``'s arguments), sets up
    its networks, then calls ``apply_hyperparams()``. Its ``act_info`` counts
    the env steps it acts for (``_acting_steps``); its ``learn`` takes one
    gradient step per minibatch ``replay_minibatches`` yields and counts them
    in ``n_updates``. The hyperparameters read are ``ReplayAgentMixin``'s.
    """

    def replay_minibatches(self, data: EpisodeData) -> Iterator[dict[str, Any]]:
        """Store the window and yield the minibatches of the updates it earns, in order.

        The schedule and the draws are ``ReplayAgentMixin.replay_draws``'s.
        Each yield is a block of minibatches on the device, arrays shaped
        ``[count, batch_size, ...]``: ``observations``, ``actions`` (integers
        as int32, floats as float32), ``rewards``, ``next_observations`` and
        ``bootstrap`` (γ_m(1 − terminated)), observations a dict of arrays
        for Dict spaces. Uniform replay yields up to ``PACK_BYTES`` of
        minibatches at once (usually the whole window); prioritized replay
        one minibatch per block, with ``weights`` and the host-side
        ``indices``, whose priorities the caller updates before asking for
        the next.
        """
        for draw in self.replay_draws(data, PACK_BYTES):
            yield self.minibatch_arrays(draw)

    def minibatch_arrays(self, draw: HostMinibatches) -> dict[str, Any]:
        """A block of host minibatches as arrays on the device, with the prioritized
        draw's ``indices`` kept on the host."""
        with self.on_device():
            arrays: dict[str, Any] = to_arrays(draw.parts, draw.batch_size)
        if draw.indices is not None:
            arrays["indices"] = draw.indices  # stays on the host, for update_priorities
        return arrays


def to_arrays(blocks: list[dict[str, np.ndarray]], batch_size: int) -> dict[str, Any]:
    """Host minibatches as JAX arrays shaped ``[count, batch_size, ...]``: each field
    concatenated over the blocks and transferred once, Dict records unpacked on the
    way, floats as float32, pixels and indices in their own dtype."""
    arrays = {}
    for key in blocks[0]:
        parts = [block[key] for block in blocks]
        array = parts[0] if len(parts) == 1 else np.concatenate(parts)
        converted = O.to_jax(unpacked(array))
        arrays[key] = O.map_obs(lambda a: a.reshape(-1, batch_size, *a.shape[1:]), converted)
    return arrays
