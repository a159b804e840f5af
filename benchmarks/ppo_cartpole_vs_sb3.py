"""optix-torch PPO against Stable-Baselines3 PPO on CartPole-v1, side by side in one run.

    uv run python benchmarks/ppo_cartpole_vs_sb3.py [--seeds 0 1 2] [--steps 100000]
        [--network default|sequential] [--tf] [--jax]

Both sides get rl-zoo's tuned CartPole-v1 settings: 8 environments, 32 steps
per environment per rollout, minibatch 256, 20 epochs, gae_lambda 0.8,
gamma 0.98, no entropy bonus, learning rate linear from 1e-3 and clip range
linear from 0.2 (both to 0 at --steps), vf_coef 0.5, max_grad_norm 0.5,
per-minibatch advantage normalisation, Adam with eps 1e-5, separate actor
and critic MLPs [64, 64] tanh with orthogonal initialisation; time-limit
truncations bootstrap from the value of the final observation on both sides.
One thread for torch (set once, for both).

optix trains with its own pieces: ``VectorBatchPipeline`` (gymnasium's
SyncVectorEnv) feeding ``make_ppo``'s agent (``--network default``: the policy
layer's ``ActorCritic``, whose two MLPs run together and update on the
accelerators) or a ``TorchPPOAgent`` over a user's two ``nn.Sequential``
networks of the same widths and initialisation (``--network sequential``:
the plain autograd path with the lean Adam). SB3 trains with
``make_vec_env`` (DummyVecEnv) and its ``MlpPolicy``.

Every 8,192 environment steps (after the update that completes them), each
side's policy is scored by the same function, ``optix_core.evaluate_policy``,
on the same 20 deterministic episodes (evaluation seed ``--eval-seed``).
Evaluation time is excluded from every reported time on both sides.
Reported per seed and library: training steps per second over the whole
run, and the training wall time (and steps) to the first evaluation with a
mean of at least 475; then the ratios optix / SB3. The final policy's score
is reported on 20 fresh episodes (seed ``--eval-seed`` + 1), never on the
episodes that found the 475.

With ``--tf``, optix-tf's PPO (``optix_tf.algorithms.ppo.make_ppo``: the same
default network in Keras, the whole window's update one ``tf.function``)
runs as a third side, one TensorFlow thread as torch has one, and its ratios
to SB3 and to optix-torch are reported too.

With ``--jax``, optix-jax's PPO (``optix_jax.algorithms.ppo.make_ppo``: the
same default network in Flax NNX, the whole window's update one jitted
function with its minibatches a ``jax.lax.scan``) runs as a side too, and its
ratios to SB3 and its steps to 475 beside optix-torch's are reported (the
parity issue 13 asks for). XLA's CPU client is limited to one thread for it
(``--xla_cpu_multi_thread_eigen=false``, set before jax is imported).

The seeds run one after the other; within a seed the library that goes first
alternates, so slow drift in a shared machine's load does not favour one side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

# Installs optix's TensorFlow/triton import guard before Stable-Baselines3 imports
# TensorFlow (through tensorboard, where both are installed); see DESIGN.md.
import optix_torch  # noqa: F401

THRESHOLD = 475.0


class Clock:
    """Training time with evaluations left out."""

    def __init__(self, eval_every: int, eval_seed: int, episodes: int, evaluate: Any) -> None:
        self.eval_every, self.eval_seed, self.episodes = eval_every, eval_seed, episodes
        self.evaluate = evaluate
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.first: tuple[int, float] | None = None
        self.scores: list[tuple[int, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.excluded

    def maybe_evaluate(self, steps: int, agent: Any) -> None:
        if steps == 0 or steps % self.eval_every:
            return
        train_time = self.elapsed()
        t0 = time.perf_counter()
        score = self.evaluate(
            agent, "CartPole-v1", episodes=self.episodes, seed=self.eval_seed
        ).mean
        self.excluded += time.perf_counter() - t0
        self.scores.append((steps, score))
        if self.first is None and score >= THRESHOLD:
            self.first = (steps, train_time)


# Issue 11's targets: the accelerated default network, and a user's nn.Sequential.
SPEED_TARGET = {"default": 3.0, "sequential": 1.5}


def sequential_agent(hyperparams: dict[str, Any], seed: int) -> Any:
    """A user's TorchPPOAgent: SB3's MlpPolicy networks as two nn.Sequential."""
    import math

    import gymnasium as gym
    from torch import nn

    from optix_torch.algorithms.ppo import TorchPPOAgent

    def net(out: int, gain: float) -> nn.Sequential:
        layers = nn.Sequential(
            nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, out)
        )
        for layer, g in zip(layers[::2], (math.sqrt(2), math.sqrt(2), gain), strict=True):
            nn.init.orthogonal_(layer.weight, gain=g)
            nn.init.zeros_(layer.bias)
        return layers

    torch.manual_seed(seed)
    return TorchPPOAgent(
        net(2, 0.01),
        net(1, 1.0),
        hyperparams=hyperparams,
        device="cpu",
        seed=seed,
        action_space=gym.spaces.Discrete(2),
    )


def run_optix(
    seed: int, steps: int, clock: Clock, network: str = "default", backend: str = "torch"
) -> dict[str, Any]:
    import gymnasium as gym

    from optix_core.pipeline import VectorBatchPipeline
    from optix_core.types import HyperparamSet

    if backend == "tf":
        from optix_tf.algorithms.ppo import make_ppo
    elif backend == "jax":
        from optix_jax.algorithms.ppo import make_ppo
    else:
        from optix_torch.algorithms.ppo import make_ppo

    probe = gym.make("CartPole-v1")
    hyperparams = {
        "learning_rate": 1e-3,
        "clip_ratio": 0.2,
        "entropy_coef": 0.0,
        "vf_coef": 0.5,
        "gamma": 0.98,
        "gae_lambda": 0.8,
        "n_epochs": 20,
        "minibatch_size": 256,
        "max_grad_norm": 0.5,
        "normalize_advantage": True,
        "anneal_steps": steps,
    }
    clock.start = time.perf_counter()
    if network == "sequential":
        agent = sequential_agent(hyperparams, seed)
    else:
        agent = make_ppo(
            probe.observation_space,
            probe.action_space,
            hyperparams=HyperparamSet(hyperparams),
            device="cpu",
            seed=seed,
        )
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=8, window_size=32, seed=seed, agent=agent
    )
    done = 0
    while done < steps:
        window = pipeline.collect()
        agent.learn(window)
        done += window.n_steps
        clock.maybe_evaluate(done, agent)
    total = clock.elapsed()
    pipeline.close()
    return {"steps": done, "train_s": total, "agent": agent}


class SB3Policy:
    """An SB3 model behind optix's act(obs, deterministic), for evaluate_policy."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.model.predict(observation, deterministic=deterministic)[0]

    def reset_state(self, mask: np.ndarray | None = None) -> None:
        """A feed-forward policy has no state to reset."""


def run_sb3(seed: int, steps: int, clock: Clock, network: str = "default") -> dict[str, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def linear(initial: float) -> Any:
        return lambda progress_remaining: progress_remaining * initial

    class Evaluate(BaseCallback):
        # SB3 calls _on_rollout_start after the update of the previous rollout:
        # the same point at which optix evaluates.
        def _on_rollout_start(self) -> None:
            clock.maybe_evaluate(self.num_timesteps, SB3Policy(self.model))

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            clock.maybe_evaluate(self.num_timesteps, SB3Policy(self.model))

    clock.start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        vf_coef=0.5,
        max_grad_norm=0.5,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=steps, callback=Evaluate())
    total = clock.elapsed()
    env.close()
    return {"steps": model.num_timesteps, "train_s": total, "agent": SB3Policy(model)}


def report_extra_side(results: dict[str, list[dict[str, Any]]], side: str) -> None:
    """Steps/s of ``side`` against SB3's and optix-torch's, its time to 475 against
    SB3's, and its steps to 475 beside optix-torch's, per seed."""
    for base, target in (("sb3", 1.5), ("optix", 0.5)):
        ratio = [
            t["steps_per_s"] / b["steps_per_s"]
            for t, b in zip(results[side], results[base], strict=True)
        ]
        print(
            f"steps/s, {side} / {base} per seed: "
            + ", ".join(f"{r:.2f}" for r in ratio)
            + f" (mean {statistics.mean(ratio):.2f}; target >= {target})"
        )
    reach = [
        t["s_to_475"] / s["s_to_475"]
        for t, s in zip(results[side], results["sb3"], strict=True)
        if t["s_to_475"] and s["s_to_475"]
    ]
    if reach:
        print(
            f"time to 475, {side} / SB3 per seed: "
            + ", ".join(f"{r:.2f}" for r in reach)
            + f" (mean {statistics.mean(reach):.2f}; target <= 0.5)"
        )
    print(
        f"steps to 475, {side} vs optix-torch per seed: "
        + ", ".join(
            f"{t['steps_to_475']} vs {o['steps_to_475']}"
            for t, o in zip(results[side], results["optix"], strict=True)
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=8192)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=10_000)
    parser.add_argument("--only", choices=["optix", "sb3", "optix-tf", "optix-jax"], default=None)
    parser.add_argument("--tf", action="store_true", help="add optix-tf's PPO as a side")
    parser.add_argument("--jax", action="store_true", help="add optix-jax's PPO as a side")
    parser.add_argument("--network", choices=["default", "sequential"], default="default")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from optix_core.evaluation import evaluate_policy

    runners = {
        "optix": run_optix,
        "sb3": run_sb3,
        "optix-tf": lambda *a: run_optix(*a, backend="tf"),
        "optix-jax": lambda *a: run_optix(*a, backend="jax"),
    }
    sides = [args.only] if args.only else ["sb3", "optix"]
    if args.tf:
        if args.network != "default":
            parser.error("--tf runs the default network only")
        import tensorflow as tf

        import optix_tf  # noqa: F401  (its import guard: TensorFlow and torch's triton in one process)

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        sides.append("optix-tf")
    if args.jax:
        if args.network != "default":
            parser.error("--jax runs the default network only")
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
        )
        sides.append("optix-jax")
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    print(
        f"CartPole-v1 PPO, rl-zoo settings, {args.network} network, {args.steps} steps, evaluation every "
        f"{args.eval_every} steps ({args.eval_episodes} episodes, seed {args.eval_seed}); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    # One untimed, short run of each side first: torch imports torch._dynamo (with sympy,
    # triton, torch.onnx: about 900 modules) at the first optimizer a process builds,
    # which would otherwise land in the timing of whichever side runs first.
    for side in sides:
        runners[side](
            0, 1024, Clock(args.eval_every, args.eval_seed, 1, evaluate_policy), args.network
        )
    for i, seed in enumerate(args.seeds):
        order = sides if i % 2 == 0 else sides[::-1]
        for side in order:
            clock = Clock(args.eval_every, args.eval_seed, args.eval_episodes, evaluate_policy)
            out = runners[side](seed, args.steps, clock, args.network)
            final = evaluate_policy(
                out["agent"], "CartPole-v1", episodes=args.eval_episodes, seed=args.eval_seed + 1
            ).mean
            row = {
                "seed": seed,
                "steps": out["steps"],
                "train_s": out["train_s"],
                "steps_per_s": out["steps"] / out["train_s"],
                "steps_to_475": clock.first[0] if clock.first else None,
                "s_to_475": clock.first[1] if clock.first else None,
                "final_eval": final,
                "evals": clock.scores,
            }
            results[side].append(row)
            reach = (
                f"{row['steps_to_475']} steps in {row['s_to_475']:.2f} s"
                if clock.first
                else "never"
            )
            print(
                f"seed {seed} {side:8s}: {row['steps_per_s']:7.0f} steps/s "
                f"({row['train_s']:.1f} s), first eval >= 475: {reach}, "
                f"final policy on fresh episodes {final:.1f}, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    for extra in ("optix-tf", "optix-jax"):
        if extra in results and "sb3" in results and "optix" in results:
            report_extra_side(results, extra)
    if len(sides) >= 2:
        speed = [
            o["steps_per_s"] / s["steps_per_s"]
            for o, s in zip(results["optix"], results["sb3"], strict=True)
        ]
        reach = [
            o["s_to_475"] / s["s_to_475"]
            for o, s in zip(results["optix"], results["sb3"], strict=True)
            if o["s_to_475"] and s["s_to_475"]
        ]
        print(
            "steps/s, optix / SB3 per seed: "
            + ", ".join(f"{r:.2f}" for r in speed)
            + f" (mean {statistics.mean(speed):.2f}; target >= {SPEED_TARGET[args.network]})"
        )
        if reach:
            print(
                "time to 475, optix / SB3 per seed: "
                + ", ".join(f"{r:.2f}" for r in reach)
                + f" (mean {statistics.mean(reach):.2f}; target <= 0.5)"
            )
        missing = [
            f"{side} seed {row['seed']}"
            for side in sides
            for row in results[side]
            if row["s_to_475"] is None
        ]
        if missing:
            print("never reached 475: " + ", ".join(missing))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
