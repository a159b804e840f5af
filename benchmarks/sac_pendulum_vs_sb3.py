"""SAC (or TD3) on Pendulum-v1: optix-torch against Stable-Baselines3, side by side in one run.

Both libraries get the same environment (Pendulum-v1, one environment, its
200-step time limit bootstrapped as a truncation by both), the same networks
(ReLU MLPs [256, 256] for the actor and each of the two critics), the same
settings (rl-zoo's Pendulum setting: SB3's SAC defaults with learning rate
1e-3: batch 256, buffer 1e6, learning_starts 100, tau 0.005, gamma 0.99, one
gradient step per environment step, automatic entropy temperature with target
−dim(A)), the same seed, the same torch thread count, and the same final
evaluation: optix_core's ``evaluate_policy``, deterministic, 20 fresh episodes
seeded 10_000 + seed (never seen in training). Training time is measured from
the first environment step to the last update (construction and evaluation
excluded), as wall-clock and as this process's CPU time (the CPU time is the
steadier number on a shared machine). For each seed the two libraries run one
after the other, alternating which goes first.

``--algo td3`` runs TD3 the same way: SB3's TD3 defaults with learning rate
1e-3 (policy_delay 2, target noise 0.2 clipped at 0.5) and Gaussian
exploration noise 0.1 (SB3's ``NormalActionNoise``, optix's ``expl_noise``).

optix learns through its own pipeline (``VectorBatchPipeline`` windows of
``--window`` steps, the registered default 256): the same updates as SB3, but
taken after each window instead of between steps, so the policy acting lags by
up to one window. ``--window 1`` interleaves them as SB3 does.

    uv run python benchmarks/sac_pendulum_vs_sb3.py                         # 20k steps, seeds 0 1 2
    uv run python benchmarks/sac_pendulum_vs_sb3.py --seeds 0 --steps 20000
    uv run python benchmarks/sac_pendulum_vs_sb3.py --seeds 1 2 --steps 5000 --json out.jsonl
    uv run python benchmarks/sac_pendulum_vs_sb3.py --algo td3 --seeds 0 --steps 10000
    uv run python benchmarks/sac_pendulum_vs_sb3.py --backend tf          # optix-tf's SAC instead
    uv run python benchmarks/sac_pendulum_vs_sb3.py --device cuda --seeds 0 --steps 5000

With ``--backend tf`` optix's side is optix-tf's agent (the same algorithm and
networks in Keras, each gradient step one ``tf.function``), one TensorFlow
thread per ``--threads``. ``--device cuda`` puts both libraries' networks and
updates on the GPU; both keep the replay memory on the host, and optix copies a
window's minibatches over in one transfer per dtype where SB3 copies each one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

ENV_ID = "Pendulum-v1"
NET = [256, 256]
LEARNING_RATE = 1e-3
EVAL_EPISODES = 20
EXPL_NOISE = 0.1


def train_optix(
    algo: str, seed: int, steps: int, window: int, backend: str = "torch", device: str = "cpu"
) -> tuple[Any, float, float]:
    from optix_core.pipeline import VectorBatchPipeline

    if backend == "tf":
        from optix_tf.algorithms.sac import make_sac
        from optix_tf.algorithms.td3 import make_td3
    else:
        from optix_torch.algorithms.sac import make_sac
        from optix_torch.algorithms.td3 import make_td3

    env = gym.make(ENV_ID)
    make = {"sac": make_sac, "td3": make_td3}[algo]
    agent = make(
        env.observation_space,
        env.action_space,
        hyperparams={"learning_rate": LEARNING_RATE},
        device=device,
        seed=seed,
        hidden=tuple(NET),
    )
    pipeline = VectorBatchPipeline(
        env_id=ENV_ID, n_envs=1, window_size=window, seed=seed, agent=agent
    )
    wall, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < steps:
        pipeline.window_size = min(window, steps - done)  # a shorter last window
        agent.learn(pipeline.collect())
        done += pipeline.window_size
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pipeline.close()
    return agent, wall, cpu


class SB3Policy:
    """Stable-Baselines3's model behind optix's ``act`` so both are evaluated by the same code."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def act(self, observation: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.model.predict(observation, deterministic=deterministic)[0]

    def reset_state(self, mask: np.ndarray | None = None) -> None:
        """An MLP policy keeps no state between steps."""


def train_sb3(algo: str, seed: int, steps: int, device: str = "cpu") -> tuple[Any, float, float]:
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    kwargs: dict[str, Any] = {}
    if algo == "td3":  # optix's expl_noise 0.1, in the same (−1, 1) units
        kwargs["action_noise"] = NormalActionNoise(np.zeros(1), np.full(1, EXPL_NOISE))
    model = {"sac": SAC, "td3": TD3}[algo](
        "MlpPolicy",
        ENV_ID,
        learning_rate=LEARNING_RATE,
        policy_kwargs={"net_arch": NET},
        seed=seed,
        device=device,
        verbose=0,
        **kwargs,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return SB3Policy(model), wall, cpu


def run(
    algo: str,
    library: str,
    seed: int,
    steps: int,
    window: int,
    backend: str = "torch",
    device: str = "cpu",
) -> dict[str, Any]:
    from optix_core.evaluation import evaluate_policy

    if library == "optix":
        policy, wall, cpu = train_optix(algo, seed, steps, window, backend, device)
    else:
        policy, wall, cpu = train_sb3(algo, seed, steps, device)
    result = evaluate_policy(policy, ENV_ID, episodes=EVAL_EPISODES, seed=10_000 + seed)
    row = {
        "algo": algo,
        "library": library,
        "backend": backend if library == "optix" else "torch",
        "seed": seed,
        "device": device,
        "steps": steps,
        "window": window if library == "optix" else 1,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "steps_per_s": round(steps / wall, 1),
        "steps_per_cpu_s": round(steps / cpu, 1),
        "eval_mean": round(result.mean, 1),
        "eval_std": round(result.std, 1),
        "load_avg": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("sac", "td3"), default="sac")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--window", type=int, default=256, help="optix's window (steps per learn)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for both libraries")
    parser.add_argument("--json", help="append the result rows to this JSON-lines file")
    parser.add_argument(
        "--backend",
        choices=("torch", "tf"),
        default="torch",
        help="optix's side: optix-torch or optix-tf",
    )
    parser.add_argument("--device", default="cpu", help="both libraries' torch device: cpu, cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.backend == "tf":
        import tensorflow as tf

        import optix_tf  # noqa: F401  (its import guard: TensorFlow and torch's triton in one process)

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    import stable_baselines3

    print(
        f"# {args.algo.upper()} {ENV_ID}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({args.threads} thread(s), {args.device}), SB3 {stable_baselines3.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}, optix backend {args.backend}",
        flush=True,
    )
    # One untimed, short run of each side first: torch imports torch._dynamo (with sympy,
    # triton, torch.onnx: about 900 modules) at the first optimizer a process builds,
    # which would otherwise land in the timing of whichever side runs first.
    train_optix(args.algo, 0, 300, args.window, args.backend, args.device)
    train_sb3(args.algo, 0, 300, args.device)
    rows = []
    for i, seed in enumerate(args.seeds):
        order = ("optix", "sb3") if i % 2 == 0 else ("sb3", "optix")
        for library in order:
            rows.append(
                run(args.algo, library, seed, args.steps, args.window, args.backend, args.device)
            )
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    print(f"\n{'seed':>4} {'library':>7} {'steps/s':>8} {'steps/cpu-s':>11} {'eval':>16}")
    for row in rows:
        print(
            f"{row['seed']:>4} {row['library']:>7} {row['steps_per_s']:>8} "
            f"{row['steps_per_cpu_s']:>11} {row['eval_mean']:>8} ± {row['eval_std']:<6}"
        )
    print("\nratios optix / SB3 (speed: higher is faster; return: optix − SB3)")
    speed, cpu_speed = [], []
    for seed in args.seeds:
        ours = next(r for r in rows if r["seed"] == seed and r["library"] == "optix")
        theirs = next(r for r in rows if r["seed"] == seed and r["library"] == "sb3")
        speed.append(ours["steps_per_s"] / theirs["steps_per_s"])
        cpu_speed.append(ours["steps_per_cpu_s"] / theirs["steps_per_cpu_s"])
        print(
            f"seed {seed}: wall {speed[-1]:.2f}x, cpu {cpu_speed[-1]:.2f}x, "
            f"return {ours['eval_mean'] - theirs['eval_mean']:+.1f}"
        )
    if len(args.seeds) > 1:
        print(
            f"mean: wall {statistics.mean(speed):.2f}x, cpu {statistics.mean(cpu_speed):.2f}x; "
            f"returns optix {statistics.mean(r['eval_mean'] for r in rows if r['library'] == 'optix'):.1f}, "
            f"SB3 {statistics.mean(r['eval_mean'] for r in rows if r['library'] == 'sb3'):.1f}"
        )


if __name__ == "__main__":
    main()
