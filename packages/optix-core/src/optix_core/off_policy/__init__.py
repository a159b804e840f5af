"""What the off-policy algorithms (DQN, Rainbow, SAC, TD3) share on every backend.

Everything here is numpy: the replay memory and its checkpoint file
(``memory``), Stable-Baselines3's update schedule, β annealing and the
timing of target updates (``schedule``), the counters and the window's
minibatches on the host (``agent.ReplayAgentMixin``), ε-greedy exploration
(``q_learning``), the distributional agents' atoms and output checks
(``distributional``) and the actor-critics' action scaling (``actor_critic``).
A backend supplies only what needs its framework: turning a
``HostMinibatches`` into its tensors, and one gradient step on them.
"""

from optix_core.off_policy.actor_critic import (
    ActionScaler,
    action_size,
    check_action_space,
    check_twin_critics,
)
from optix_core.off_policy.agent import COUNTERS, ReplayAgentMixin
from optix_core.off_policy.distributional import (
    DEFAULT_ATOMS,
    atom_support,
    check_atoms,
    choose_atoms,
    returns_log_probs,
    warn_without_noisy_layers,
)
from optix_core.off_policy.memory import (
    PRIORITY_EPS,
    REPLAY_FILE,
    Replay,
    WindowFeed,
    action_dtype,
    learner_fields,
    saved_spec,
    window_slice,
)
from optix_core.off_policy.q_learning import (
    check_n_actions,
    epsilon_greedy,
    epsilon_schedule,
    exploration_end,
    require_discrete,
)
from optix_core.off_policy.schedule import (
    PACK_BYTES,
    DueSteps,
    HostMinibatches,
    due_steps,
    first_update,
    per_beta,
    sync_segments,
    update_due,
)

__all__ = [
    "COUNTERS",
    "DEFAULT_ATOMS",
    "PACK_BYTES",
    "PRIORITY_EPS",
    "REPLAY_FILE",
    "ActionScaler",
    "DueSteps",
    "HostMinibatches",
    "Replay",
    "ReplayAgentMixin",
    "WindowFeed",
    "action_dtype",
    "action_size",
    "atom_support",
    "check_action_space",
    "check_atoms",
    "check_n_actions",
    "check_twin_critics",
    "choose_atoms",
    "due_steps",
    "epsilon_greedy",
    "epsilon_schedule",
    "exploration_end",
    "first_update",
    "learner_fields",
    "per_beta",
    "require_discrete",
    "returns_log_probs",
    "saved_spec",
    "sync_segments",
    "update_due",
    "warn_without_noisy_layers",
    "window_slice",
]
