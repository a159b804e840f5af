"""A2C / REINFORCE hyperparameters (optix-torch's TorchAgent)."""

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
    # tensor-optix's, Adam. Both are chosen when the agent is built (BUILT_WITH).
    "use_rms_prop": False,
    "rms_prop_eps": 1e-5,
}
BUILT_WITH = ("use_rms_prop", "rms_prop_eps")
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
# rl-baselines3-zoo's CartPole settings: SB3's A2C (RMSprop, 8 environments x 5
# steps) without an entropy bonus. Its other suite tasks normalize observations
# (VecNormalize), anneal the learning rate or explore by gSDE, which optix's
# A2C does not offer.
PRESETS = {
    "CartPole-v1": {"hyperparams": {"use_rms_prop": True, "entropy_coef": 0.0}},
}
SPEC = {
    "name": "a2c",
    "action_spaces": ("discrete", "continuous", "multi_discrete", "multi_binary"),
    "on_policy": True,
    "summary": "Advantage actor-critic (REINFORCE without a critic)",
}
