"""TD3 hyperparameters: tensor-optix's keys plus Stable-Baselines3's schedule.

``learning_starts``, ``train_freq`` and ``gradient_steps`` mean what they mean
in SB3 (see ``sac.py``). ``expl_noise`` is the standard deviation of
the Gaussian exploration noise added to the actor's (−1, 1) action (SB3's
``NormalActionNoise``); ``target_noise`` and ``noise_clip`` are SB3's
``target_policy_noise`` and ``target_noise_clip``, in the same units. ``ou_noise`` makes the exploration
noise an Ornstein-Uhlenbeck process of scale ``expl_noise`` while training
acts (SB3's ``OrnsteinUhlenbeckActionNoise``; ``off_policy/exploration.py``).
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "tau": 0.005,
    "batch_size": 256,
    "replay_capacity": 1_000_000,
    "learning_starts": 100,
    "train_freq": 1,
    "gradient_steps": 1,
    "policy_delay": 2,
    "target_noise": 0.2,
    "noise_clip": 0.5,
    "expl_noise": 0.1,
    "ou_noise": False,
}
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "gamma": Bound(0.0, 1.0),
    "tau": Bound(0.0, 1.0, open_low=True),
    "batch_size": Bound(1, 1 << 20, integer=True),
    "replay_capacity": Bound(1, 1 << 31, integer=True),
    "learning_starts": Bound(0, 1 << 40, integer=True),
    "train_freq": Bound(1, 1 << 20, integer=True),
    "gradient_steps": Bound(1, 1 << 20, integer=True),
    "policy_delay": Bound(1, 1 << 20, integer=True),
    "target_noise": Bound(0.0, 10.0),
    "noise_clip": Bound(0.0, 10.0),
    "expl_noise": Bound(0.0, 10.0),
    "ou_noise": Bound.flag(),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "gamma": ("float", 0.95, 0.999),
    "tau": ("log_float", 1e-3, 5e-2),
    "expl_noise": ("float", 0.05, 0.3),
}
ROLLOUT = {"n_envs": 1, "window_size": 256}
# rl-baselines3-zoo's settings, its [400, 300] networks on every one. Pendulum and
# LunarLanderContinuous: Gaussian exploration noise 0.1, and training once per
# episode with as many gradient steps as the episode had steps. Pendulum's
# episodes are all 200 steps (train_freq 200); LunarLanderContinuous's vary, so
# it takes one gradient step per env step, the same count, each window's
# together. MountainCarContinuous explores with an Ornstein-Uhlenbeck process of
# scale 0.5, its other settings SB3's defaults.
_ZOO_NETWORK = {"hidden": [400, 300]}
_ZOO_EPISODIC = {
    "learning_rate": 1e-3,
    "gamma": 0.98,
    "replay_capacity": 200_000,
    "learning_starts": 10_000,
    "expl_noise": 0.1,
}
PRESETS = {
    "Pendulum-v1": {
        "hyperparams": {**_ZOO_EPISODIC, "train_freq": 200, "gradient_steps": 200},
        "network": _ZOO_NETWORK,
    },
    "LunarLanderContinuous-v3": {
        "hyperparams": {**_ZOO_EPISODIC, "train_freq": 1, "gradient_steps": 1},
        "network": _ZOO_NETWORK,
    },
    "MountainCarContinuous-v0": {
        "hyperparams": {"ou_noise": True, "expl_noise": 0.5},
        "network": _ZOO_NETWORK,
    },
}
SPEC = {
    "name": "td3",
    "action_spaces": ("continuous",),
    "on_policy": False,
    "summary": "TD3: deterministic actor, twin critics, target smoothing, delayed actor updates",
}
