"""SAC hyperparameters: tensor-optix's keys plus Stable-Baselines3's schedule.

``learning_starts``, ``train_freq`` and ``gradient_steps`` mean what they mean
in SB3: uniform random actions until ``learning_starts`` transitions were
seen, then ``gradient_steps`` updates after every ``train_freq`` vector steps.
``ent_coef`` is the entropy temperature α: its starting value when
``auto_ent_coef`` learns it (SB3's ``ent_coef="auto"``, or ``"auto_0.1"`` with
``ent_coef=0.1``), the fixed value otherwise (SB3's ``ent_coef=0.1``). ``use_sde``: generalized state-dependent exploration
(gSDE, Raffin et al. 2022) instead of independent Gaussian noise: the noise is
the actor's last hidden features times a random matrix drawn every
``sde_sample_freq`` steps (and at every ``train_freq`` boundary; −1: only
there), whose entries have the learned std exp(log σ), log σ starting at
``log_std_init``. SB3's ``use_sde``, ``sde_sample_freq`` and ``log_std_init``.
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "tau": 0.005,
    "batch_size": 256,
    "replay_capacity": 1_000_000,
    "learning_starts": 100,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": 1.0,
    "auto_ent_coef": True,
    "use_sde": False,
    "sde_sample_freq": -1,
    "log_std_init": -3.0,
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
    "ent_coef": Bound(0.0, 1e6, open_low=True),
    "auto_ent_coef": Bound.flag(),
    "use_sde": Bound.flag(),
    "sde_sample_freq": Bound(-1, 1 << 20, integer=True),
    "log_std_init": Bound(-20.0, 2.0),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "gamma": ("float", 0.95, 0.999),
    "tau": ("log_float", 1e-3, 5e-2),
}
ROLLOUT = {"n_envs": 1, "window_size": 256}
# rl-baselines3-zoo's settings, networks (net_arch) included. LunarLanderContinuous's
# learning rate falls linearly in the zoo (lin_7.3e-4) and is constant here.
PRESETS = {
    "Pendulum-v1": {"hyperparams": {"learning_rate": 1e-3}},
    "LunarLanderContinuous-v3": {
        "hyperparams": {
            "learning_rate": 7.3e-4,
            "batch_size": 256,
            "replay_capacity": 1_000_000,
            "gamma": 0.99,
            "tau": 0.01,
            "train_freq": 1,
            "gradient_steps": 1,
            "learning_starts": 10_000,
        },
        "network": {"hidden": [400, 300]},
    },
    "MountainCarContinuous-v0": {
        "hyperparams": {
            "learning_rate": 3e-4,
            "replay_capacity": 50_000,
            "batch_size": 512,
            "ent_coef": 0.1,
            "auto_ent_coef": False,
            "train_freq": 32,
            "gradient_steps": 32,
            "gamma": 0.9999,
            "tau": 0.01,
            "learning_starts": 0,
            "use_sde": True,
            "log_std_init": -3.67,
        },
        "network": {"hidden": [64, 64]},
    },
}
SPEC = {
    "name": "sac",
    "action_spaces": ("continuous",),
    "on_policy": False,
    "summary": "Soft actor-critic: squashed Gaussian, twin critics, learned temperature",
}
