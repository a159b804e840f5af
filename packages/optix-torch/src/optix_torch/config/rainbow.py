"""Rainbow DQN (TorchRainbowDQNAgent) hyperparameters.

tensor-optix 1.10's keys (learning_rate, gamma, n_step, per_alpha, per_beta,
batch_size, target_update_freq, replay_capacity) plus optix's
``learning_starts`` (env steps stored before the first update),
``gradient_steps`` (updates per learn() call, i.e. per window) and
``max_grad_norm``. Training actions are uniformly random until
``learning_starts`` env steps have been stored, then come from the noisy
network.

The defaults are DQN's rl-zoo CartPole-v1 schedule (lr 2.3e-3, batch 64, 128
gradient steps per 256-step window, target copied once per window, 1,000
random steps first) with Rainbow's n_step 3, per_alpha 0.5, per_beta 0.4:
measured on CartPole-v1 (docs/dqn.md) they reach a deterministic 475 within
26k env steps on seeds 0-2, where lr 1e-3 with 64 gradient steps per window
and a target copy every 256 stalled near 150 on seed 1 for 51k steps. For Atari use Hessel et al.'s: learning_rate 6.25e-5,
batch_size 32, target_update_freq 8000 updates, learning_starts 80k, one
update per 4 env steps.
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 2.3e-3,
    "gamma": 0.99,
    "n_step": 3,
    "per_alpha": 0.5,
    "per_beta": 0.4,
    "batch_size": 64,
    "target_update_freq": 128,
    "replay_capacity": 100_000,
    "learning_starts": 1000,
    "gradient_steps": 128,
    "max_grad_norm": 10.0,
}
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "gamma": Bound(0.0, 1.0),
    "n_step": Bound(1, 1000, integer=True),
    "per_alpha": Bound(0.0, 1.0),
    "per_beta": Bound(0.0, 1.0),
    "batch_size": Bound(1, 1e6, integer=True),
    "target_update_freq": Bound(1, 1e9, integer=True),
    "replay_capacity": Bound(1, 1e9, integer=True),
    "learning_starts": Bound(0, 1e12, integer=True),
    "gradient_steps": Bound(0, 1e6, integer=True),
    "max_grad_norm": Bound(0.0, 1e6, open_low=True),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 6.25e-5, 3e-3),
    "per_beta": ("float", 0.4, 1.0),
    "batch_size": ("int", 32, 256),
    "target_update_freq": ("log_int", 64, 4000),
    "gradient_steps": ("int", 16, 256),
}
ROLLOUT = {"n_envs": 1, "window_size": 256}
SPEC = {
    "name": "rainbow",
    "factory": "optix_torch.rainbow:make_rainbow",
    "action_spaces": ("discrete",),
    "on_policy": False,
    "summary": "Rainbow DQN: double Q, dueling, prioritized replay, n-step, noisy nets, C51",
}
