"""DQN on CartPole-v1: optix-torch against Stable-Baselines3, side by side in one run.

Both sides train rl-baselines3-zoo's DQN CartPole-v1 settings on one
CartPole-v1 environment: lr 2.3e-3, batch 64, buffer 100k, learning_starts
1000, gamma 0.99, 128 gradient steps after every 256 env steps, target network
synchronised before each training phase (SB3: target_update_interval 10 env
steps; optix: target_update_freq 128 gradient steps, the same thing), ε
linear from 1.0 to 0.04 over the first 8,000 env steps, ReLU MLP [256, 256],
Huber loss, gradient norm clipped at 10, Adam, the same number of torch
threads (``--threads``, default 1). Truncated
episodes bootstrap on both sides (SB3's handle_timeout_termination).

Every ``--eval-every`` env steps (after that many steps' training phase) each
side's greedy policy plays ``--eval-episodes`` episodes with optix's
``evaluate_policy`` on the same seeds; the clock (wall and process CPU) stops
during evaluations. A run ends at the first evaluation whose mean reaches
``--target``, or after ``--max-steps``. The reached policy is then scored on
other, fresh episodes (never the ones that stopped the run).

The sides alternate which goes first from seed to seed, so drift in the
machine's load falls on both. Reported: per seed, env steps and time to the
target, and the ratio optix / SB3 of wall time (the target is ≤ 0.5), plus
training throughput (env steps per second of training, evaluations excluded).

    uv run python benchmarks/dqn_cartpole_vs_sb3.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

ENV_ID = "CartPole-v1"
ZOO = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_steps": 8000,
    "exploration_final_eps": 0.04,
    "net_arch": [256, 256],
    "max_grad_norm": 10.0,
}


@dataclass
class Result:
    side: str
    seed: int
    reached: bool
    env_steps: int
    wall_s: float  # training wall time to the target (evaluations excluded)
    cpu_s: float  # process CPU time of the same span
    eval_s: float  # time spent in evaluations, not counted above
    evaluations: list[float]
    report_mean: float  # the reached policy on fresh episodes
    report_std: float

    @property
    def steps_per_s(self) -> float:
        return self.env_steps / self.wall_s


class Clock:
    """Wall and CPU time with evaluations taken out."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.eval = 0.0
        self._wall0 = self._cpu0 = 0.0

    def start(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall += time.perf_counter() - self._wall0
        self.cpu += time.process_time() - self._cpu0


def evaluations(args: argparse.Namespace):
    """The k-th evaluation plays the same episodes on both sides."""
    from optix_core.evaluation import evaluate_policy

    def evaluate(agent, k: int) -> float:
        return evaluate_policy(
            agent, ENV_ID, episodes=args.eval_episodes, seed=10_000 + 1_000 * k
        ).mean

    def report(agent) -> tuple[float, float]:
        result = evaluate_policy(agent, ENV_ID, episodes=args.report_episodes, seed=999_999)
        return result.mean, result.std

    return evaluate, report


def run_optix(seed: int, args: argparse.Namespace) -> Result:
    import gymnasium as gym

    from optix_core.pipeline import VectorBatchPipeline
    from optix_torch.algorithms.dqn import make_dqn

    env = gym.make(ENV_ID)
    agent = make_dqn(
        env.observation_space,
        env.action_space,
        hyperparams={
            "learning_rate": ZOO["learning_rate"],
            "batch_size": ZOO["batch_size"],
            "replay_capacity": ZOO["buffer_size"],
            "learning_starts": ZOO["learning_starts"],
            "gamma": ZOO["gamma"],
            "train_freq": ZOO["train_freq"],
            "gradient_steps": ZOO["gradient_steps"],
            "target_update_freq": ZOO["gradient_steps"],
            "epsilon": 1.0,
            "epsilon_min": ZOO["exploration_final_eps"],
            "exploration_steps": ZOO["exploration_steps"],
            "max_grad_norm": ZOO["max_grad_norm"],
            "huber_loss": True,
            "per_alpha": 0.0,
            "n_step": 1,
        },
        device="cpu",
        seed=seed,
    )
    env.close()
    pipeline = VectorBatchPipeline(
        env_id=ENV_ID, n_envs=1, window_size=ZOO["train_freq"], seed=seed, agent=agent
    )
    evaluate, report = evaluations(args)
    clock, scores, reached = Clock(), [], False
    clock.start()
    while pipeline.env_steps < args.max_steps:
        agent.learn(pipeline.collect())
        if pipeline.env_steps % args.eval_every == 0:
            clock.stop()
            t = time.perf_counter()
            scores.append(evaluate(agent, len(scores)))
            clock.eval += time.perf_counter() - t
            if scores[-1] >= args.target:
                reached = True
                break
            clock.start()
    else:
        clock.stop()
    pipeline.close()
    mean, std = report(agent)
    return Result(
        "optix",
        seed,
        reached,
        pipeline.env_steps,
        clock.wall,
        clock.cpu,
        clock.eval,
        scores,
        mean,
        std,
    )


def run_sb3(seed: int, args: argparse.Namespace) -> Result:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    evaluate, report = evaluations(args)

    class Predictor:
        def __init__(self, model) -> None:
            self.model = model

        def act(self, obs, deterministic: bool = True):
            return self.model.predict(obs, deterministic=deterministic)[0]

        def reset_state(self, mask=None) -> None:  # a memoryless policy: nothing to forget
            pass

    clock = Clock()

    class EvalAndStop(BaseCallback):
        """Evaluates at the start of a rollout, i.e. after the previous training phase."""

        def __init__(self) -> None:
            super().__init__()
            self.scores: list[float] = []
            self.reached = False

        def _on_rollout_start(self) -> None:
            n = self.num_timesteps
            if n and n % args.eval_every == 0 and not self.reached:
                self._evaluate()

        def _evaluate(self) -> None:
            clock.stop()
            t = time.perf_counter()
            self.scores.append(evaluate(Predictor(self.model), len(self.scores)))
            clock.eval += time.perf_counter() - t
            if self.scores[-1] >= args.target:
                self.reached = True
            else:
                clock.start()

        def _on_step(self) -> bool:
            return not self.reached

    model = DQN(
        "MlpPolicy",
        ENV_ID,
        learning_rate=ZOO["learning_rate"],
        batch_size=ZOO["batch_size"],
        buffer_size=ZOO["buffer_size"],
        learning_starts=ZOO["learning_starts"],
        gamma=ZOO["gamma"],
        target_update_interval=10,
        train_freq=ZOO["train_freq"],
        gradient_steps=ZOO["gradient_steps"],
        exploration_fraction=ZOO["exploration_steps"] / args.max_steps,
        exploration_initial_eps=1.0,
        exploration_final_eps=ZOO["exploration_final_eps"],
        max_grad_norm=ZOO["max_grad_norm"],
        policy_kwargs={"net_arch": ZOO["net_arch"]},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    callback = EvalAndStop()
    clock.start()
    model.learn(total_timesteps=args.max_steps, callback=callback)
    if not callback.reached:
        clock.stop()
        if model.num_timesteps % args.eval_every == 0:  # the last training phase's evaluation
            callback._evaluate()
    steps = model.num_timesteps - (1 if callback.reached else 0)  # the step that saw the stop flag
    mean, std = report(Predictor(model))
    return Result(
        "sb3",
        seed,
        callback.reached,
        steps,
        clock.wall,
        clock.cpu,
        clock.eval,
        callback.scores,
        mean,
        std,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=51_200)
    parser.add_argument("--eval-every", type=int, default=2_560)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--report-episodes", type=int, default=50)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--sides", nargs="+", default=["optix", "sb3"], choices=["optix", "sb3"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.eval_every % ZOO["train_freq"]:
        parser.error(f"--eval-every must be a multiple of {ZOO['train_freq']}")
    torch.set_num_threads(args.threads)

    runners = {"optix": run_optix, "sb3": run_sb3}
    # One untimed, short run of each side first: torch imports torch._dynamo (with sympy,
    # triton, torch.onnx: about 900 modules) at the first optimizer a process builds,
    # which would otherwise land in the timing of whichever side runs first.
    brief = argparse.Namespace(**{**vars(args), "max_steps": 1280, "report_episodes": 1})
    for side in args.sides:
        runners[side](0, brief)
    results: list[Result] = []
    for i, seed in enumerate(args.seeds):
        order = args.sides if i % 2 == 0 else args.sides[::-1]
        for side in order:
            result = runners[side](seed, args)
            results.append(result)
            print(
                f"seed {seed} {side:5s}: {'reached' if result.reached else 'MISSED '} "
                f"{args.target:g} at {result.env_steps:6d} steps in {result.wall_s:6.1f} s wall "
                f"({result.cpu_s:6.1f} s CPU, {result.steps_per_s:5.0f} steps/s; "
                f"evaluations {result.eval_s:.1f} s); fresh episodes "
                f"{result.report_mean:.1f} ± {result.report_std:.1f}; "
                f"evals {[round(s) for s in result.evaluations]}",
                flush=True,
            )

    by = {(r.side, r.seed): r for r in results}
    if {"optix", "sb3"} <= set(args.sides):
        print("\nseed  optix s  sb3 s  wall ratio  CPU ratio  throughput ratio (optix/sb3 steps/s)")
        ratios, cpu_ratios, speed = [], [], []
        for seed in args.seeds:
            o, s = by["optix", seed], by["sb3", seed]
            ratio, cpu = o.wall_s / s.wall_s, o.cpu_s / s.cpu_s
            fast = o.steps_per_s / s.steps_per_s
            both = o.reached and s.reached
            ratios.append(ratio) if both else None
            cpu_ratios.append(cpu) if both else None
            speed.append(fast)
            print(
                f"{seed:4d}  {o.wall_s:7.1f}  {s.wall_s:5.1f}  {ratio:10.2f}  {cpu:9.2f}  "
                f"{fast:16.2f}{'' if both else '  (a side missed the target)'}"
            )
        if ratios:
            print(
                f"geometric mean over seeds where both reached {args.target:g}: wall "
                f"{_gmean(ratios):.2f}x, CPU {_gmean(cpu_ratios):.2f}x; throughput "
                f"{_gmean(speed):.2f}x SB3's"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) | {"steps_per_s": r.steps_per_s} for r in results], f, indent=2)
    return 0


def _gmean(values: list[float]) -> float:
    return float(math.exp(np.mean(np.log(values))))


if __name__ == "__main__":
    sys.exit(main())
