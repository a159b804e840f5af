"""DQN hyperparameters (optix-torch's TorchDQNAgent).

The defaults are rl-baselines3-zoo's tuned CartPole-v1 settings (which reach
500 in 50k steps): lr 2.3e-3, batch 64, buffer 100k, learning_starts 1000,
gamma 0.99, train_freq 256 with 128 gradient steps, target network copied
once per training phase, ε linear from 1.0 to 0.04 over 8,000 env steps
(``exploration_steps``; the zoo's exploration_fraction 0.16 of 5e4), Huber
loss and gradient norm clipped at 10 as Stable-Baselines3 does.

The update schedule is Stable-Baselines3's, as for SAC and TD3: uniform random
actions until ``learning_starts`` env steps were collected; after every
``train_freq``-th vector-env step, once more than ``learning_starts``
transitions were seen, ``gradient_steps`` updates, each minibatch drawn from
the transitions stored up to that step. The loop's window size changes none
of it. ``target_update_freq`` counts gradient steps (tensor-optix's meaning:
its DQN took one gradient step per learn() call); the zoo's
``target_update_interval`` of 10 env steps with train_freq 256 copies the
target once before each phase of 128 gradient steps, which is
``target_update_freq`` 128.

ε is evaluated at every training action from the env steps collected so far.
``exploration_steps = 0`` switches to tensor-optix's multiplicative schedule,
read per env step: ε_t = max(epsilon_min, epsilon · epsilon_decay^t) after t
env steps. tensor-optix multiplied ε by ``epsilon_decay`` once per learn()
call, i.e. once per window of its pipeline (200 env steps by default, 2048 in
its examples), so its speed depended on the window size; per env step it
does not, and a tensor-optix setting d with windows of W steps is d^(1/W)
here (0.995 per 200-step window ≈ 0.999975). The default 0.9996 brings ε
from 1.0 to 0.04 in about 8,000 env steps, as the linear default does.

Prioritized replay's importance-sampling exponent β goes linearly from
``per_beta`` to 1 over ``per_beta_steps`` env steps; 0 keeps β at
``per_beta``. Schaul et al. (2016, section 3.4) anneal β to reach 1 only at
the end of learning, since unbiased updates matter most near convergence;
Hessel et al. (2018) take it from 0.4 to 1 over the whole run. The default,
50,000, is the zoo's CartPole-v1 training budget, the run these defaults are
tuned for, so β reaches 1 as such a run ends; for a longer run set it to the
run's length.
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 2.3e-3,
    "gamma": 0.99,
    "epsilon": 1.0,
    "epsilon_min": 0.04,
    "epsilon_decay": 0.9996,
    "exploration_steps": 8000,
    "batch_size": 64,
    "target_update_freq": 128,
    "replay_capacity": 100_000,
    "per_alpha": 0.0,
    "per_beta": 0.4,
    "per_beta_steps": 50_000,
    "n_step": 1,
    "learning_starts": 1000,
    "train_freq": 256,
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
    "per_beta_steps": Bound(0, 1e12, integer=True),
    "n_step": Bound(1, 1000, integer=True),
    "learning_starts": Bound(0, 1e12, integer=True),
    "train_freq": Bound(1, 1e6, integer=True),
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
# rl-baselines3-zoo's tuned settings for the classic-control and Box2D tasks it
# trains DQN on with 1e5 env steps (its net_arch [256, 256] is the default
# network): one gradient step per env step every 4 steps (gradient_steps -1),
# the target copied every 250 env steps (= 250 gradient steps here), ε linear
# from 1.0 to 0.1 over 12% of the budget.
_ZOO_CONTROL = {
    "learning_rate": 6.3e-4,
    "batch_size": 128,
    "replay_capacity": 50_000,
    "learning_starts": 0,
    "gamma": 0.99,
    "target_update_freq": 250,
    "train_freq": 4,
    "gradient_steps": 4,
    "exploration_steps": 12_000,
    "epsilon_min": 0.1,
}
# MountainCar-v0: the zoo's settings for its 120k steps (ε to 0.07 over its first
# 20%, the target copied every 600 env steps = 300 gradient steps), in windows of
# 16 steps, its train_freq. optix acts through a window with the policy of the
# window's start, SB3 with the latest: on MountainCar that matters. With 256-step
# windows, seeds 0-2 ended 120k steps at -190, -152 and -200; with 16, seeds 0 and
# 2 at -98 and -99 (SB3: -129, -162, -101).
_ZOO_MOUNTAINCAR = {
    "learning_rate": 4e-3,
    "batch_size": 128,
    "replay_capacity": 10_000,
    "learning_starts": 1000,
    "gamma": 0.98,
    "target_update_freq": 300,
    "train_freq": 16,
    "gradient_steps": 8,
    "exploration_steps": 24_000,
    "epsilon_min": 0.07,
}
PRESETS = {
    "CartPole-v1": {},  # the defaults are the zoo's CartPole settings
    "Acrobot-v1": {"hyperparams": dict(_ZOO_CONTROL)},
    "LunarLander-v3": {"hyperparams": dict(_ZOO_CONTROL)},
    "MountainCar-v0": {
        "hyperparams": _ZOO_MOUNTAINCAR,
        "rollout": {"n_envs": 1, "window_size": 16},
    },
}
SPEC = {
    "name": "dqn",
    "action_spaces": ("discrete",),
    "on_policy": False,
    "summary": "Deep Q-network: replay (uniform or prioritized), n-step targets, target network, ε-greedy",
}
