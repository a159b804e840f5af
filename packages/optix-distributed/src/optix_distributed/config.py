"""IMPALA's hyperparameters, valid ranges, tuning ranges and rollout shape (no torch here:
registering and listing agents imports no framework)."""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 5e-4,
    "gamma": 0.99,
    "rho_bar": 1.0,  # ρ̄: clips the importance weight of the TD error (the fixed point's policy)
    "c_bar": 1.0,  # c̄: clips the traces (how far back a TD error reaches)
    "entropy_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "gamma": Bound(0.0, 1.0),
    "rho_bar": Bound(0.0, 100.0, open_low=True),
    "c_bar": Bound(0.0, 100.0, open_low=True),
    "entropy_coef": Bound(0.0, 1.0),
    "vf_coef": Bound(0.0, 10.0),
    "max_grad_norm": Bound(0.0, 100.0, open_low=True),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "gamma": ("float", 0.95, 0.999),
    "entropy_coef": ("log_float", 1e-4, 0.05),
}
# What the loop may move while one run trains: the learner's step size and entropy bonus.
ONLINE_SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "entropy_coef": ("log_float", 1e-4, 0.05),
}
# Per actor: n_envs environments, trajectories of window_size steps; a batch is
# one trajectory from each of n_actors actors, a window `rounds` batches (1,024
# steps: the loop's evaluation backoff and patience count windows). Chosen on CartPole-v1 (3 seeds,
# 250k steps, deterministic 10-episode evaluations every 25k): learning rate
# 5e-4 without an entropy bonus, on windows of 2 × 4 × 16 steps, held 480-500
# where 1e-3 or 0.01 entropy or 8 × 32 steps swung between 150 and 500.
ROLLOUT = {"n_envs": 4, "window_size": 16, "n_actors": 2, "rounds": 8}
