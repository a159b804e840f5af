"""A2C / REINFORCE hyperparameters (optix-torch's TorchAgent).

``anneal_steps``, ``normalize_observations``, ``normalize_reward``,
``use_sde``, ``sde_sample_freq`` and ``log_std_init`` are PPO's
(``config.ppo``): rl-zoo's linear learning-rate schedule, SB3's VecNormalize
and gSDE (``optix_core.on_policy.OnPolicyWindow``).
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 7e-4,
    "gamma": 0.99,
    "gae_lambda": 1.0,
    "entropy_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_advantage": False,
    # Stable-Baselines3's A2C steps RMSprop (smoothing 0.99, ε added after the root);
    # tensor-optix's, Adam. Both are chosen when the agent is built (BUILT_WITH),
    # as is whether its networks read standardized observations.
    "use_rms_prop": False,
    "rms_prop_eps": 1e-5,
    "anneal_steps": 0,
    "normalize_observations": False,
    "normalize_reward": False,
    "use_sde": False,
    "sde_sample_freq": -1,
    "log_std_init": 0.0,
}
BUILT_WITH = ("use_rms_prop", "rms_prop_eps", "normalize_observations", "use_sde", "log_std_init")
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "gamma": Bound(0.0, 1.0),
    "gae_lambda": Bound(0.0, 1.0),
    "entropy_coef": Bound(0.0, 1.0),
    "vf_coef": Bound(0.0, 10.0),
    "max_grad_norm": Bound(0.0, 100.0, open_low=True),
    "normalize_advantage": Bound.flag(),
    "use_rms_prop": Bound.flag(),
    "rms_prop_eps": Bound(0.0, 1.0, open_low=True),
    "anneal_steps": Bound(0, 2**62, integer=True),
    "normalize_observations": Bound.flag(),
    "normalize_reward": Bound.flag(),
    "use_sde": Bound.flag(),
    "sde_sample_freq": Bound(-1, 1 << 20, integer=True),
    "log_std_init": Bound(-20.0, 2.0),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "gamma": ("float", 0.95, 0.999),
    "gae_lambda": ("float", 0.9, 1.0),
    "entropy_coef": ("float", 0.0, 0.05),
}
# What the loop may tune while one run trains (the agent's ``search_space``),
# as for PPO (see ppo.py): the learning rate and the entropy bonus, both
# by factors (the default entropy bonus of 0 becomes 1e-4 once tuned).
ONLINE_SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "entropy_coef": ("log_float", 1e-4, 0.05),
}
ROLLOUT = {"n_envs": 8, "window_size": 5}
# A window of 8 x 5 steps ends an episode now and then; scored one by one, ten
# evaluations without a record took 3,120 steps of LunarLander for convergence.
# The loop scores windows of about 4,000 env steps together instead: every
# 100th of 8 x 5 steps, as Stable-Baselines3's A2C logs every 100 updates
# (log_interval) where its PPO logs every one; every 10th of MountainCar's 4 x 100.
LOOP_HINTS = {"steps_per_evaluation": 4000}
# rl-baselines3-zoo's A2C settings: SB3's A2C (RMSprop, environments x 5 steps)
# without an entropy bonus; Acrobot's normalize observations and rewards
# (VecNormalize). The zoo anneals LunarLander's learning rate to 0 over its
# 200k-step budget (lin_0.00083); here it stays at 8.3e-4, since the loop, not a
# budget, ends the run: annealed, `optix train` learned nothing after 200k steps
# and waited 350k more (seed 0: 32.3 over 20 episodes, the policy of 183k
# steps), where constant it scored 135.5 and 115.8 on seeds 0 and 1.
_ZOO = {"use_rms_prop": True, "entropy_coef": 0.0}
# Its continuous tasks explore by gSDE with PyTorch's initialisation, observations
# and rewards normalized; Pendulum and LunarLanderContinuous with λ 0.9 and the
# value loss weighed 0.4, their learning rates constant where the zoo anneals them
# (lin_7e-4) over 1M and 5M steps.
_NORMALIZED_GSDE = {
    **_ZOO,
    "normalize_observations": True,
    "normalize_reward": True,
    "use_sde": True,
}
_GSDE = {**_NORMALIZED_GSDE, "gae_lambda": 0.9, "vf_coef": 0.4, "log_std_init": -2.0}
PRESETS = {
    "CartPole-v1": {"hyperparams": _ZOO},
    "Acrobot-v1": {
        "hyperparams": {**_ZOO, "normalize_observations": True, "normalize_reward": True},
        "rollout": {"n_envs": 16, "window_size": 5},
    },
    "LunarLander-v3": {
        "hyperparams": {**_ZOO, "gamma": 0.995, "learning_rate": 8.3e-4, "entropy_coef": 1e-5},
        "rollout": {"n_envs": 8, "window_size": 5},
    },
    "Pendulum-v1": {
        "hyperparams": _GSDE,
        "rollout": {"n_envs": 8, "window_size": 8},
        "network": {"ortho_init": False},
    },
    "LunarLanderContinuous-v3": {
        "hyperparams": _GSDE,
        "rollout": {"n_envs": 4, "window_size": 8},
        "network": {"ortho_init": False},
    },
    "MountainCarContinuous-v0": {
        "hyperparams": {**_NORMALIZED_GSDE, "sde_sample_freq": 16},
        "rollout": {"n_envs": 4, "window_size": 100},
        "network": {"ortho_init": False},
    },
}
SPEC = {
    "name": "a2c",
    "action_spaces": ("discrete", "continuous", "multi_discrete", "multi_binary"),
    "on_policy": True,
    "summary": "Advantage actor-critic; without a critic, REINFORCE",
}
