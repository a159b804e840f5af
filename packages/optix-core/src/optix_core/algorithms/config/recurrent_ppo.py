"""Recurrent PPO hyperparameters (optix-torch's TorchRecurrentPPOAgent).

The first nine keys and their defaults are tensor-optix 1.10's. optix adds
``seq_len`` (the length of the sequences minibatches are cut into, which is
how far gradients flow back in time; the hidden state at each sequence's start
is the one stored at act time, so nothing is lost at the cut),
``normalize_advantage`` (per minibatch) and ``normalize_reward`` (rewards
divided by the running standard deviation of the discounted return before
GAE, so that the critic's loss does not drown the policy's gradient in the
LSTM trunk the two share), and PPO's ``target_kl`` and ``clip_range_vf``
(Stable-Baselines3's; 0, the default, turns each off; see ``ppo.py``).
"""

from optix_core.hyperparams import Bound

DEFAULTS = {
    "learning_rate": 3e-4,
    "clip_ratio": 0.2,
    "entropy_coef": 0.01,
    "vf_coef": 0.5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "n_epochs": 4,
    "minibatch_size": 64,
    "max_grad_norm": 0.5,
    "seq_len": 16,
    "normalize_advantage": True,
    "normalize_reward": True,
    "target_kl": 0.0,
    "clip_range_vf": 0.0,
}
BOUNDS = {
    "learning_rate": Bound(0.0, 1.0, open_low=True),
    "clip_ratio": Bound(0.0, 1.0, open_low=True),
    "entropy_coef": Bound(0.0, 1.0),
    "vf_coef": Bound(0.0, 10.0),
    "gamma": Bound(0.0, 1.0),
    "gae_lambda": Bound(0.0, 1.0),
    "n_epochs": Bound(1, 1000, integer=True),
    "minibatch_size": Bound(1, 1_000_000, integer=True),
    "max_grad_norm": Bound(0.0, 100.0, open_low=True),
    "seq_len": Bound(1, 100_000, integer=True),
    "normalize_advantage": Bound.flag(),
    "normalize_reward": Bound.flag(),
    "target_kl": Bound(0.0, 100.0),
    "clip_range_vf": Bound(0.0, 1e6),
}
SEARCH_SPACE = {
    "learning_rate": ("log_float", 1e-4, 3e-3),
    "clip_ratio": ("float", 0.1, 0.3),
    "entropy_coef": ("float", 0.0, 0.05),
    "vf_coef": ("float", 0.25, 1.0),
    "gamma": ("float", 0.95, 0.999),
    "gae_lambda": ("float", 0.9, 1.0),
    "n_epochs": ("int", 3, 15),
    "minibatch_size": ("log_int", 32, 256),
    "max_grad_norm": ("float", 0.3, 1.0),
}
ROLLOUT = {"n_envs": 8, "window_size": 128}
SPEC = {
    "name": "recurrent-ppo",
    "action_spaces": ("discrete", "continuous", "multi_discrete", "multi_binary"),
    "on_policy": True,
    "summary": "PPO with an LSTM actor-critic, for partially observed tasks, on every action space",
}
