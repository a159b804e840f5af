"""Replay buffers in preallocated numpy arrays: uniform, prioritized, n-step, HER and compact."""

from optix_core.buffers.compact import CompactPrioritizedReplayBuffer, CompactReplayBuffer
from optix_core.buffers.her import EpisodeTooLongError, HERReplayBuffer, HERStrategyError
from optix_core.buffers.nstep import NStepWriter
from optix_core.buffers.prioritized import (
    PrioritizedReplayBuffer,
    PriorityError,
    PriorityExponentError,
)
from optix_core.buffers.replay import (
    BufferFileError,
    FieldSpec,
    NotEnoughTransitionsError,
    ReplayBuffer,
    ReplayBufferError,
    TransitionDtypeError,
    TransitionFieldsError,
    TransitionShapeError,
    transition_fields,
    window_transitions,
)
from optix_core.buffers.sum_tree import SumTree, SumTreeError

__all__ = [
    "BufferFileError",
    "CompactPrioritizedReplayBuffer",
    "CompactReplayBuffer",
    "EpisodeTooLongError",
    "FieldSpec",
    "HERReplayBuffer",
    "HERStrategyError",
    "NStepWriter",
    "NotEnoughTransitionsError",
    "PrioritizedReplayBuffer",
    "PriorityError",
    "PriorityExponentError",
    "ReplayBuffer",
    "ReplayBufferError",
    "SumTree",
    "SumTreeError",
    "TransitionDtypeError",
    "TransitionFieldsError",
    "TransitionShapeError",
    "transition_fields",
    "window_transitions",
]
