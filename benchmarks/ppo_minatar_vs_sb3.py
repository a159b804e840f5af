"""optix-torch PPO against Stable-Baselines3 PPO on pixels (MinAtar Breakout), side by side.

    uv run --with minatar==1.0.15 python benchmarks/ppo_minatar_vs_sb3.py \\
        [--seeds 0 1] [--steps 100000]

MinAtar (Young & Tian 2019) renders Atari games as 10×10 planes; Breakout's
are 4 boolean channels, given to both sides as uint8 0/255 images
(``[10, 10, 4]``), so each side's pixel path runs: uint8 observations,
scaled to [0, 1] inside the network. The network is the same on both sides:
MinAtar's (a 16-filter 3×3 convolution, a linear layer of 128, ReLUs) as the
shared features extractor, linear policy and value heads, orthogonal
initialisation: optix's default for images this small (``SmallCNN``), SB3's
``CnnPolicy`` given the same extractor class (NatureCNN needs 36 pixels a
side). Settings, both sides: 8 environments × 128 steps per rollout,
minibatch 256, 4 epochs, lr 2.5e-4, clip 0.1, entropy 0.01, vf 0.5, γ 0.99,
λ 0.95, max_grad_norm 0.5, one torch thread.

Reported per seed: training steps per second (no evaluation inside the
timed run) and the final policy's deterministic score on 20 fresh episodes;
then the ratio optix / SB3. The libraries alternate which goes first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

ENV_ID = "MinAtar/Breakout-v1"
SETTINGS = {"n_envs": 8, "n_steps": 128, "batch": 256, "epochs": 4, "lr": 2.5e-4}


class PixelsAsUint8(gym.ObservationWrapper):
    """MinAtar's boolean planes as uint8 0/255 images."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, env.observation_space.shape, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation.astype(np.uint8) * 255


def make_env() -> gym.Env:
    import minatar.gym

    if ENV_ID not in gym.registry:
        minatar.gym.register_envs()
    return PixelsAsUint8(gym.make(ENV_ID))


def run_optix(seed: int, steps: int) -> tuple[float, Any]:
    from optix_core.pipeline import VectorBatchPipeline
    from optix_core.types import HyperparamSet
    from optix_torch.algorithms.ppo import make_ppo
    from optix_torch.policies import SmallCNN

    probe = make_env()
    hp = {
        "learning_rate": SETTINGS["lr"],
        "clip_ratio": 0.1,
        "entropy_coef": 0.01,
        "vf_coef": 0.5,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "n_epochs": SETTINGS["epochs"],
        "minibatch_size": SETTINGS["batch"],
        "max_grad_norm": 0.5,
    }
    start = time.perf_counter()
    agent = make_ppo(
        probe.observation_space,
        probe.action_space,
        hyperparams=HyperparamSet(hp),
        device="cpu",
        seed=seed,
    )
    assert isinstance(agent.actor.extractor, SmallCNN)
    pipeline = VectorBatchPipeline(
        env_fns=[make_env] * SETTINGS["n_envs"],
        window_size=SETTINGS["n_steps"],
        seed=seed,
        agent=agent,
    )
    done = 0
    while done < steps:
        window = pipeline.collect()
        agent.learn(window)
        done += window.n_steps
    elapsed = time.perf_counter() - start
    pipeline.close()
    return done / elapsed, agent


class SB3Policy:
    def __init__(self, model: Any) -> None:
        self.model = model

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.model.predict(observation, deterministic=deterministic)[0]

    def reset_state(self, mask: np.ndarray | None = None) -> None:
        """A feed-forward policy has no state to reset."""


def run_sb3(seed: int, steps: int) -> tuple[float, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    class MinAtarCNN(BaseFeaturesExtractor):
        """optix's SmallCNN, in SB3's extractor form (SB3 transposes images to [C, H, W])."""

        def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
            super().__init__(observation_space, features_dim)
            channels, height, width = observation_space.shape
            self.cnn = nn.Sequential(nn.Conv2d(channels, 16, 3), nn.ReLU(), nn.Flatten())
            flat = 16 * (height - 2) * (width - 2)
            self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.linear(self.cnn(observations))

    start = time.perf_counter()
    env = make_vec_env(make_env, n_envs=SETTINGS["n_envs"], seed=seed)
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=SETTINGS["n_steps"],
        batch_size=SETTINGS["batch"],
        n_epochs=SETTINGS["epochs"],
        learning_rate=SETTINGS["lr"],
        clip_range=0.1,
        ent_coef=0.01,
        vf_coef=0.5,
        gamma=0.99,
        gae_lambda=0.95,
        max_grad_norm=0.5,
        policy_kwargs={"features_extractor_class": MinAtarCNN, "net_arch": []},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=steps)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed, SB3Policy(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from optix_core.evaluation import evaluate_policy

    make_env().close()  # MinAtar's import (matplotlib, seaborn) stays out of both timings
    print(
        f"{ENV_ID} PPO, default pixel networks, {args.steps} steps; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    runners = {"optix": run_optix, "sb3": run_sb3}
    speeds: dict[str, list[float]] = {"optix": [], "sb3": []}
    # One untimed, short run of each side first: torch imports torch._dynamo (with sympy,
    # triton, torch.onnx: about 900 modules) at the first optimizer a process builds,
    # which would otherwise land in the timing of whichever side runs first.
    for side in runners:
        runners[side](0, 2048)
    for i, seed in enumerate(args.seeds):
        for side in ("sb3", "optix") if i % 2 == 0 else ("optix", "sb3"):
            rate, policy = runners[side](seed, args.steps)
            score = evaluate_policy(
                policy, make_env, episodes=args.eval_episodes, seed=args.eval_seed
            ).mean
            speeds[side].append(rate)
            print(
                f"seed {seed} {side:5s}: {rate:7.0f} steps/s, final policy on "
                f"{args.eval_episodes} fresh episodes {score:.2f}, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    ratios = [o / s for o, s in zip(speeds["optix"], speeds["sb3"], strict=True)]
    print(
        "steps/s, optix / SB3 per seed: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f" (mean {statistics.mean(ratios):.2f}; target >= 1.2)"
    )


if __name__ == "__main__":
    main()
