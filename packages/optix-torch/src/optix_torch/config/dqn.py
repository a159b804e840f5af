"""DQN (TorchDQNAgent) hyperparameters.

The defaults are rl-baselines3-zoo's tuned CartPole-v1 settings (which reach
500 in 50k steps): lr 2.3e-3, batch 64, buffer 100k, learning_starts 1000,
gamma 0.99, train_freq 256 with 128 gradient steps (a 256-step window with
``gradient_steps`` 128), target network copied once per training phase
(``target_update_freq`` 128 gradient steps, which is what the zoo's
``target_update_interval`` 10 env steps amounts to with train_freq 256), ε
linear from 1.0 to 0.04 over 8,000 env steps (``exploration_steps``; the zoo's
exploration_fraction 0.16 of 5e4), Huber loss and gradient norm clipped at 10
as Stable-Baselines3 does. ``exploration_steps = 0`` switches to
tensor-optix's multiplicative schedule, ε ← max(epsilon_min, ε · epsilon_decay)
once per learn() call.
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 2.3e-3,
    "gamma": 0.99,
    "epsilon": 1.0,
    "epsilon_min": 0.04,
    "epsilon_decay": 0.995,
    "exploration_steps": 8000,
    "batch_size": 64,
    "target_update_freq": 128,
    "replay_capacity": 100_000,
    "per_alpha": 0.0,
    "per_beta": 0.4,
    "n_step": 1,
    "learning_starts": 1000,
    "gradient_steps": 128,
    "max_grad_norm": 10.0,
    "huber_loss": True,
}
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "gamma": Bound(0.0, 1.0),
    "epsilon": Bound(0.0, 1.0),
    "epsilon_min": Bound(0.0, 1.0),
    "epsilon_decay": Bound(0.0, 1.0),
    "exploration_steps": Bound(0, 1e12, integer=True),
    "batch_size": Bound(1, 1e6, integer=True),
    "target_update_freq": Bound(1, 1e9, integer=True),
    "replay_capacity": Bound(1, 1e9, integer=True),
    "per_alpha": Bound(0.0, 1.0),
    "per_beta": Bound(0.0, 1.0),
    "n_step": Bound(1, 1000, integer=True),
    "learning_starts": Bound(0, 1e12, integer=True),
    "gradient_steps": Bound(0, 1e6, integer=True),
    "max_grad_norm": Bound(0.0, 1e6, open_low=True),
    "huber_loss": Bound.flag(),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "gamma": ("float", 0.95, 0.999),
    "batch_size": ("int", 32, 256),
    "target_update_freq": ("log_int", 10, 1000),
    "gradient_steps": ("int", 16, 256),
}
ROLLOUT = {"n_envs": 1, "window_size": 256}
SPEC = {
    "name": "dqn",
    "factory": "optix_torch.dqn:make_dqn",
    "action_spaces": ("discrete",),
    "on_policy": False,
    "summary": "Deep Q-network: replay (uniform or prioritized), n-step targets, target network, ε-greedy",
}
