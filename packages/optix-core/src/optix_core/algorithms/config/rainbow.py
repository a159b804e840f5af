"""Rainbow DQN hyperparameters (optix-torch's TorchRainbowDQNAgent).

tensor-optix 1.10's keys (learning_rate, gamma, n_step, per_alpha, per_beta,
batch_size, target_update_freq, replay_capacity) plus optix's
``learning_starts``, ``train_freq``, ``gradient_steps``, ``per_beta_steps``
and ``max_grad_norm``. The update schedule is DQN's (Stable-Baselines3's):
uniform random training actions until ``learning_starts`` env steps were
collected, then actions from the noisy network; after every
``train_freq``-th vector-env step, once more than ``learning_starts``
transitions were seen, ``gradient_steps`` updates, each minibatch drawn from
the transitions stored up to that step, whatever the loop's window size.
``target_update_freq`` counts gradient steps. β goes linearly from
``per_beta`` to 1 over ``per_beta_steps`` env steps (Hessel et al. 2018: 0.4
to 1 over the whole run; 0 keeps β fixed); the default, 50,000 env steps,
is the CartPole-v1 budget these defaults are tuned for (rl-zoo's DQN
budget), so β reaches 1 as such a run ends. The default Adam uses ε =
1.5e-4 (Hessel et al.).

The defaults are DQN's rl-zoo CartPole-v1 schedule (lr 2.3e-3, batch 64, 128
gradient steps after every 256 env steps, target copied once per training
phase, 1,000 random steps first) with Rainbow's n_step 3, per_alpha 0.5,
per_beta 0.4 (docs/dqn.md has the measurements: lr 1e-3 with 64 gradient
steps per 256 env steps and a target copy every 256 stalled near 150 on
seed 1 for 51k steps). For Atari use Hessel et al.'s: learning_rate 6.25e-5,
batch_size 32, target_update_freq 8000 updates, learning_starts 80k,
train_freq 4 with 1 gradient step, per_beta_steps the run's length.
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 2.3e-3,
    "gamma": 0.99,
    "n_step": 3,
    "per_alpha": 0.5,
    "per_beta": 0.4,
    "per_beta_steps": 50_000,
    "batch_size": 64,
    "target_update_freq": 128,
    "replay_capacity": 100_000,
    "learning_starts": 1000,
    "train_freq": 256,
    "gradient_steps": 128,
    "max_grad_norm": 10.0,
}
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "gamma": Bound(0.0, 1.0),
    "n_step": Bound(1, 1000, integer=True),
    "per_alpha": Bound(0.0, 1.0),
    "per_beta": Bound(0.0, 1.0),
    "per_beta_steps": Bound(0, 1e12, integer=True),
    "batch_size": Bound(1, 1e6, integer=True),
    "target_update_freq": Bound(1, 1e9, integer=True),
    "replay_capacity": Bound(1, 1e9, integer=True),
    "learning_starts": Bound(0, 1e12, integer=True),
    "train_freq": Bound(1, 1e6, integer=True),
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
    "action_spaces": ("discrete",),
    "on_policy": False,
    "summary": "Rainbow DQN: double Q, dueling, prioritized replay, n-step, noisy nets, C51",
}
