"""PPO hyperparameters (optix-torch's TorchPPOAgent and TorchGaussianPPOAgent).

Defaults and tuning ranges are tensor-optix 1.10's PPO table. The other keys
are Stable-Baselines3's: ``normalize_advantage`` (per minibatch),
``target_kl`` (stop a window's epochs at the first minibatch whose
approximate KL exceeds 1.5 · target_kl; 0 never stops), ``clip_range_vf``
(clip the value prediction to within that of the value that acted; 0 does
not clip), and ``anneal_steps`` (rl-zoo's linear schedules: ``learning_rate``
and ``clip_ratio`` fall linearly to 0 over that many environment steps; 0
keeps them constant). ``normalize_observations`` and ``normalize_reward`` are
rl-zoo's ``normalize: true`` (SB3's VecNormalize): observations standardized
by running statistics, rewards divided by the running std of the discounted
return (``optix_core.on_policy.OnPolicyWindow.init_normalizers``).
``use_sde``, ``sde_sample_freq`` and ``log_std_init`` are SB3's on-policy gSDE
(``optix_core.policies.distributions.StateDependentGaussian``): exploration
is the actor's last hidden features times a matrix θ_ε, drawn as each window
begins and every ``sde_sample_freq`` steps within it (−1: only then), whose
entries have the learned std exp(log σ), log σ starting at ``log_std_init``;
the environment gets the action clipped to its bounds.
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 3e-4,
    "clip_ratio": 0.2,
    "entropy_coef": 0.01,
    "vf_coef": 0.5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "n_epochs": 10,
    "minibatch_size": 64,
    "max_grad_norm": 0.5,
    "normalize_advantage": True,
    "target_kl": 0.0,
    "clip_range_vf": 0.0,
    "anneal_steps": 0,
    "normalize_observations": False,
    "normalize_reward": False,
    "use_sde": False,
    "sde_sample_freq": -1,
    "log_std_init": 0.0,
}
# Networks trained on standardized observations act wrongly on raw ones, and gSDE
# is a network of its own: fixed when built.
BUILT_WITH = ("normalize_observations", "use_sde", "log_std_init")
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "clip_ratio": Bound(0.0, 1.0, open_low=True),
    "entropy_coef": Bound(0.0, 1.0),
    "vf_coef": Bound(0.0, 10.0),
    "gamma": Bound(0.0, 1.0),
    "gae_lambda": Bound(0.0, 1.0),
    "n_epochs": Bound(1, 1000, integer=True),
    "minibatch_size": Bound(1, 2**24, integer=True),
    "max_grad_norm": Bound(0.0, 100.0, open_low=True),
    "normalize_advantage": Bound.flag(),
    "target_kl": Bound(0.0, 100.0),
    "clip_range_vf": Bound(0.0, 1e6),
    "anneal_steps": Bound(0, 2**62, integer=True),
    "normalize_observations": Bound.flag(),
    "normalize_reward": Bound.flag(),
    "use_sde": Bound.flag(),
    "sde_sample_freq": Bound(-1, 1 << 20, integer=True),
    "log_std_init": Bound(-20.0, 2.0),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "clip_ratio": ("float", 0.1, 0.3),
    "entropy_coef": ("float", 0.0, 0.05),
    "vf_coef": ("float", 0.25, 1.0),
    "gamma": ("float", 0.95, 0.999),
    "gae_lambda": ("float", 0.9, 1.0),
    "n_epochs": ("int", 3, 15),
    "minibatch_size": ("int", 32, 256),
    "max_grad_norm": ("float", 0.3, 1.0),
}
# What the loop may tune while one run trains (the agent's ``search_space``:
# RLOptimizer's default SPSA and PolicyManager's spawns move these): the
# knobs tensor-optix calls the most sensitive, on ranges safe to move mid-run.
# The learning rate and the entropy bonus move by factors (log scale; an
# entropy bonus of 0 becomes 1e-4, next to nothing), the clip range by
# amounts. The discount, GAE's λ and the batch shape stay where the user put
# them: changing the horizon or the minibatching mid-run is not a small step.
# SEARCH_SPACE above is the wider, trial-level space of ``optix tune``.
ONLINE_SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "entropy_coef": ("log_float", 1e-4, 0.05),
    "clip_ratio": ("float", 0.1, 0.3),
}
ROLLOUT = {"n_envs": 8, "window_size": 256}
_LUNAR_LANDER = {
    "hyperparams": {
        "gamma": 0.999,
        "gae_lambda": 0.98,
        "n_epochs": 4,
        "minibatch_size": 64,
        "entropy_coef": 0.01,
    },
    "rollout": {"n_envs": 16, "window_size": 1024},
}
# rl-baselines3-zoo's tuned PPO settings for Pendulum-v1, without gSDE: with the
# defaults above (γ 0.99, lr 3e-4, entropy bonus 0.01) PPO does not learn the
# swing-up within a few hundred thousand steps; with these it does in about 60k.
PRESETS = {
    # The defaults (SB3's, 8 x 256 steps a window, constant rates) are optix's
    # CartPole settings, measured by benchmarks/suite.py (500 on every seed); the
    # zoo's (8 x 32 steps, 20 epochs, rates annealed over its 100k budget) need a
    # budget to anneal over.
    "CartPole-v1": {},
    "Pendulum-v1": {
        "hyperparams": {
            "learning_rate": 1e-3,
            "clip_ratio": 0.2,
            "entropy_coef": 0.0,
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "n_epochs": 10,
            "minibatch_size": 64,
        },
        "rollout": {"n_envs": 4, "window_size": 1024},
    },
    # rl-baselines3-zoo's Acrobot settings: 16 environments x 256 steps, 4 epochs,
    # λ 0.94, no entropy bonus, observations and rewards normalized (VecNormalize).
    "Acrobot-v1": {
        "hyperparams": {
            "gae_lambda": 0.94,
            "n_epochs": 4,
            "entropy_coef": 0.0,
            "normalize_observations": True,
            "normalize_reward": True,
        },
        "rollout": {"n_envs": 16, "window_size": 256},
    },
    # rl-baselines3-zoo's LunarLander settings (also its LunarLanderContinuous):
    # 16 environments x 1024 steps, 4 epochs of minibatches of 64, γ 0.999.
    "LunarLander-v3": _LUNAR_LANDER,
    "LunarLanderContinuous-v3": _LUNAR_LANDER,
    # rl-baselines3-zoo's MountainCarContinuous settings: gSDE, one environment x 8
    # steps (ten epochs over each 8-step window), normalized, γ 0.9999, PyTorch's
    # default initialisation. The zoo reaches 88.3 within its 20k-step budget.
    "MountainCarContinuous-v0": {
        "hyperparams": {
            "normalize_observations": True,
            "normalize_reward": True,
            "minibatch_size": 256,
            "gamma": 0.9999,
            "learning_rate": 7.77e-5,
            "entropy_coef": 0.00429,
            "clip_ratio": 0.1,
            "n_epochs": 10,
            "gae_lambda": 0.9,
            "max_grad_norm": 5.0,
            "vf_coef": 0.19,
            "use_sde": True,
            "log_std_init": -3.29,
        },
        "rollout": {"n_envs": 1, "window_size": 8},
        "network": {"ortho_init": False},
    },
    # gymnax's CartPole through optix-jax's compiled pipeline: a window costs
    # milliseconds, so it is wide (32 envs × 128 steps, PureJaxRL's rollout length)
    # and the update takes few, large minibatches at a higher rate. Seeds 0–2 reach
    # a deterministic 475 within 20k–60k steps.
    "gymnax:CartPole-v1": {
        "hyperparams": {
            "learning_rate": 2.5e-3,
            "entropy_coef": 0.0,
            "n_epochs": 4,
            "minibatch_size": 512,
        },
        "rollout": {"n_envs": 32, "window_size": 128},
    },
}
SPEC = {
    "name": "ppo",
    "action_spaces": ("discrete", "continuous", "multi_discrete", "multi_binary"),
    "on_policy": True,
    "summary": "Proximal policy optimization on every action space; MLP, CNN or Dict features",
}
