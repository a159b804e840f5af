"""The torch layer of the replay every off-policy agent shares: DQN, Rainbow, SAC, TD3.

``ReplayAgent`` is optix-core's ``off_policy.ReplayAgentMixin`` (the replay
memory, Stable-Baselines3's ``train_freq`` / ``gradient_steps`` /
``learning_starts`` schedule, its counters and their checkpoint, all in
numpy and the same on every backend) over ``TorchAgentBase``. What is
torch's own is the crossing: each block of host minibatches the schedule
draws goes to the device as tensors (``to_device``), in one copy per dtype.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from optix_core.off_policy import PACK_BYTES, HostMinibatches, ReplayAgentMixin
from optix_core.types import EpisodeData
from optix_torch.base import TorchAgentBase
from optix_torch.policies import observations as O


class ReplayAgent(ReplayAgentMixin, TorchAgentBase):
    """optix-core's replay memory, update schedule and counters, on torch tensors.

    A subclass calls the constructor (``TorchAgentBase``'s arguments), sets
    up its networks, then calls ``apply_hyperparams()``. Its ``act_info``
    counts the env steps it acts for (``_acting_steps``); its ``learn`` takes
    one gradient step per minibatch ``replay_minibatches`` yields and counts
    them in ``n_updates``. The hyperparameters read are ``ReplayAgentMixin``'s.
    """

    def replay_minibatches(self, data: EpisodeData) -> Iterator[dict[str, Any]]:
        """Store the window and yield the minibatches of the updates it earns, in order.

        The schedule and the draws are ``ReplayAgentMixin.replay_draws``'s
        (each minibatch holds only what was stored by the step its update
        was due after). Each yield is a block of minibatches on the device,
        tensors shaped ``[count, batch_size, ...]``: ``observations``,
        ``actions`` (as the window gave them, integers as int64, floats as
        float32), ``rewards``, ``next_observations`` and ``bootstrap``, the
        discount γ_m(1 − terminated) of the target (observations a dict of
        tensors for Dict spaces). Uniform replay moves up to ``PACK_BYTES``
        of minibatches at once, so a window costs one host-to-device copy
        per dtype. Prioritized replay yields one minibatch per block, with
        ``weights`` and the host-side ``indices``; the caller updates the
        priorities (``replay.update_priorities``) before asking for the next.
        """
        for draw in self.replay_draws(data, PACK_BYTES):
            yield self.minibatch_tensors(draw)

    def minibatch_tensors(self, draw: HostMinibatches) -> dict[str, Any]:
        """A block of host minibatches as tensors on the device (``to_device``), with
        the prioritized draw's ``indices`` kept on the host."""
        tensors: dict[str, Any] = to_device(draw.parts, draw.batch_size, self.device)
        if draw.indices is not None:
            tensors["indices"] = draw.indices  # stays on the host, for update_priorities
        return tensors


def to_device(
    blocks: list[dict[str, np.ndarray]], batch_size: int, device: torch.device
) -> dict[str, O.ObsTensor]:
    """Host minibatches as tensors shaped ``[count, batch_size, ...]`` on ``device``.

    The float32 fields cross in one block (one copy); the others (uint8
    pixels, integer indices and actions, Dict records, unpacked on the way)
    in their own dtype, one copy each. Observations are scaled by the network.
    """
    fields = {key: [block[key] for block in blocks] for key in blocks[0]}
    floats = {k: parts for k, parts in fields.items() if parts[0].dtype == np.float32}
    moved = pack_to_device(floats, device)
    tensors = {}
    for key, parts in fields.items():
        if key in moved:
            tensors[key] = moved[key].view(-1, batch_size, *parts[0].shape[1:])
            continue
        array = parts[0] if len(parts) == 1 else np.concatenate(parts)
        tensor = O.to_tensor(O.unpacked(array), device)
        tensors[key] = O.map_obs(lambda t: t.view(-1, batch_size, *t.shape[1:]), tensor)
    return tensors


def pack_to_device(
    parts: dict[str, list[np.ndarray]], device: torch.device
) -> dict[str, torch.Tensor]:
    """Copy float32 arrays into one block and move it to ``device`` in one transfer.

    ``parts`` names, for each field, the arrays to concatenate; returns flat
    views of the block, one per name.
    """
    sizes = {name: sum(int(a.size) for a in arrays) for name, arrays in parts.items()}
    block = np.empty(sum(sizes.values()), dtype=np.float32)
    offset = 0
    for arrays in parts.values():
        for array in arrays:
            block[offset : offset + array.size] = array.reshape(-1)
            offset += array.size
    tensor = torch.from_numpy(block).to(device)
    views, offset = {}, 0
    for name, size in sizes.items():
        views[name] = tensor[offset : offset + size]
        offset += size
    return views
